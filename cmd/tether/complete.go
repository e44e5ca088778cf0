package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/api"
)

// completionTimeout bounds what a Tab may wait for: the SVID and tetherd's
// list of sessions.
const completionTimeout = 3 * time.Second

// registerCompletions adds to the commands of root (made by newRootCmd)
// what cobra's shell completion cannot guess: the values of -o, the session
// IDs sessions revoke takes (approve and deny: the pending ones), and the
// SPIFFE IDs --spiffe-id takes.
func registerCompletions(g *globals, root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc("output", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, f := range []string{"text", "json"} {
			if strings.HasPrefix(f, toComplete) {
				out = append(out, f)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	list, _, _ := root.Find([]string{"sessions", "list"})
	revoke, _, _ := root.Find([]string{"sessions", "revoke"})
	revoke.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 || cmd.Flags().Changed("spiffe-id") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, s := range cachedSessions(g, cmd) {
			if strings.HasPrefix(s.SessionID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(s.SessionID, s.SPIFFEID))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	// approve and deny: the sessions that wait for approval.
	for _, verb := range []string{"approve", "deny"} {
		c, _, _ := root.Find([]string{"sessions", verb})
		c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, s := range cachedSessions(g, cmd) {
				if s.State == api.StatePending && strings.HasPrefix(s.SessionID, toComplete) {
					out = append(out, cobra.CompletionWithDesc(s.SessionID, s.SPIFFEID+roleNote(s.Roles)))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	spiffeIDs := func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		seen := map[string]bool{}
		for _, s := range cachedSessions(g, cmd) {
			if !seen[s.SPIFFEID] && strings.HasPrefix(s.SPIFFEID, toComplete) {
				seen[s.SPIFFEID] = true
				out = append(out, s.SPIFFEID)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	for _, c := range []*cobra.Command{list, revoke} {
		_ = c.RegisterFlagCompletionFunc("spiffe-id", spiffeIDs)
	}
}

// cachedSessions is tetherd's list of live sessions, asked with the cached
// session, for completion. It never logs in (a Tab must not start
// sessions, nor fill the per-identity cap) and never fails: without a cached
// session, or on any trouble, there is nothing to offer.
func cachedSessions(g *globals, cmd *cobra.Command) []api.Session {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, completionTimeout)
	defer cancel()
	cmd.SetContext(ctx)
	e, err := g.newEnv(cmd, false)
	if err != nil {
		return nil
	}
	defer e.close()
	list, err := e.client.List(e.ctx, spiffeid.ID{})
	if err != nil {
		return nil
	}
	return list
}
