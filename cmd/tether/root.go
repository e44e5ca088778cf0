package main

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

func newRootCmd(getenv func(string) string) *cobra.Command {
	g := &globals{getenv: getenv}
	root := &cobra.Command{
		Use:   "tether",
		Short: "The admin CLI of tetherd: sessions bound to your SPIFFE identity",
		Long: `tether logs in to tetherd with your X.509 SVID, from the SPIFFE Workload API
(--workload-api) or from PEM files (--svid-cert, --svid-key, --bundle), and
manages admin sessions. The session token is bound to your SVID's leaf
certificate; it is cached per server and SPIFFE ID in $TETHER_CACHE_DIR, else
$XDG_RUNTIME_DIR/tether, else ~/.cache/tether (folder 0700, files 0600).
Before talking to tetherd, tether refuses a cache folder that is not yours or
that others can write, and a cache file that others can read or write. A
copied token or cache file is worth nothing without the SVID's private key.

Commands that need a session log in by themselves, rebind the session when
your SVID has rotated (or start a new one when tetherd refuses the rebind:
your SVID is not newer than the one the session is bound to), and log in
again when the session has ended or the cache holds no usable token; a
session that waits for approval ('tether login --role') is refused until
another admin approves it, and they say so (exit 1). When
tetherd refuses you a new session (--max-sessions-per-identity reached),
'tether logout --all' ends every session of your SPIFFE ID with your SVID
alone.

Global flags go before or after the command; each but -v has an environment
variable it falls back to. -v logs what the client does (logins, rebinds,
retries; never a token) on stderr. Exit status: 0 on success, 1 on failure
(with one line on stderr), 2 on a usage error, 130 when interrupted (Ctrl-C).
Shell completion (tether completion bash|zsh|fish) offers the commands,
flags, -o values, and session IDs from tetherd with the cached session.`,
		Example: `  # point tether at tetherd (tetherd dev prints these lines)
  export TETHER_SERVER=https://127.0.0.1:8443 TETHER_SERVER_ID=spiffe://example.org/tetherd
  export TETHER_SVID_CERT=svid.pem TETHER_SVID_KEY=svid.key TETHER_BUNDLE=bundle.pem

  tether login
  tether whoami --output json
  tether sessions list
  tether login --role breakglass --wait    # another admin: tether sessions approve SESSION_ID
  tether sessions revoke --spiffe-id spiffe://example.org/admin/mallory
  tether logout --all      # every session of yours, with the SVID alone

  # identity from a SPIRE agent instead of files
  tether --workload-api unix:///run/spire/agent.sock --server-id spiffe://example.org/tetherd whoami`,
		// Without a command: the help, as gh, kubectl and vault do.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	g.register(root)

	sessions := &cobra.Command{
		Use:   "sessions",
		Short: "List, revoke, approve and deny the live sessions of tetherd",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	sessions.AddCommand(newListCmd(g), newRevokeCmd(g), newDecideCmd(g, true), newDecideCmd(g, false))
	root.AddCommand(newLoginCmd(g), newWhoamiCmd(g), newLogoutCmd(g), newTokenCmd(g), sessions, newVersionCmd(g))
	registerCompletions(g, root)
	strictHelp(root)
	return root
}

// strictHelp makes 'tether help TOPIC' a usage error (exit 2, one line) for
// a topic that is no command, where cobra's help command prints the usage
// and exits 0.
func strictHelp(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	help, _, err := root.Find([]string{"help"})
	if err != nil || help == root || help.Run == nil {
		return // cobra made no help command: nothing to make strict
	}
	show := help.Run
	help.RunE = func(c *cobra.Command, args []string) error {
		if topic, rest, err := c.Root().Find(args); topic == nil || err != nil || len(rest) > 0 {
			return usagef("unknown help topic %q", strings.Join(args, " "))
		}
		show(c, args)
		return nil
	}
}

// strictCompletion makes 'tether completion SHELL' a usage error (exit 2,
// one line) for a shell cobra has no script for, where cobra's completion
// command prints its help and exits 0; 'tether completion' alone still
// prints it. cobra's command writes its scripts where root's output went
// when it was made: call this once root's output is set.
func strictCompletion(root *cobra.Command, args []string) {
	root.InitDefaultCompletionCmd(args...)
	comp, _, err := root.Find([]string{"completion"})
	if err != nil || comp == root || comp.Runnable() {
		return
	}
	var shells []string
	for _, sh := range comp.Commands() {
		shells = append(shells, sh.Name())
	}
	comp.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("completion: unknown shell %q: give %s", args[0], strings.Join(shells, ", "))
		}
		return nil
	}
	comp.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// withEnv runs fn with an env for the command and explains its errors.
func withEnv(g *globals, cmd *cobra.Command, autoLogin bool, fn func(*env) error) error {
	e, err := g.newEnv(cmd, autoLogin)
	if err != nil {
		return err
	}
	defer e.close()
	if err := fn(e); err != nil {
		return e.explain(err)
	}
	return nil
}

func newWhoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the cached session, as tetherd sees it",
		Long: `whoami asks tetherd about the cached session (GET /v1/sessions/self) and shows
it, with its roles and state. It does not log in: without a cached session
(or with a cache file that holds no usable token), or when tetherd refuses
it (ended, not this identity's, or waiting for approval), it fails with exit
status 1. If your SVID has rotated, the session is rebound to the new
certificate first (it stays the same session); if tetherd refuses that (your
SVID is not newer than the one the session is bound to), whoami fails and
the next command that needs a session starts a new one.`,
		Example: `  tether whoami
  tether whoami -o json | jq -r .session.session_id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withEnv(g, cmd, false, func(e *env) error {
				s, err := e.client.Whoami(e.ctx)
				if errors.Is(err, &api.Error{Code: api.CodeSessionEnded}) || errors.Is(err, &api.Error{Code: api.CodeInvalidToken}) ||
					errors.Is(err, client.ErrUnusableToken) {
					// The cached token is dead, or no token at all: forget it.
					_ = e.store.DeleteToken()
				}
				if err != nil {
					return err
				}
				return e.out.session("", s)
			})
		},
	}
}

func newLogoutCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "logout [--all]",
		Short: "End the cached session (--all: every session of yours) and forget its token",
		Long: `logout ends the cached session at tetherd and deletes the cache file. It never
logs in. Without a cached session, or when it has already ended, there is
nothing to end and logout succeeds.

With --all, it ends every session of your SPIFFE ID, wherever it was started,
with your SVID alone: it needs no session, so it works when tetherd refuses
you a new one (--max-sessions-per-identity reached, and the sessions' tokens
lost). It deletes the cache file too.

The cache file goes whatever tetherd says. If tetherd cannot be reached or
does not confirm, logout deletes it anyway and exits 1 saying so: the session
is then still live at tetherd until it idles out (or tetherd restarts); run
'tether logout --all' once tetherd answers to end it. Interrupted (Ctrl-C),
logout leaves the cache as it was.`,
		Example: `  tether logout
  tether logout --all
  tether logout --all -o json     # {"revoked": N}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withEnv(g, cmd, false, func(e *env) error {
				if all {
					return logoutAll(cmd, e)
				}
				token, err := e.store.LoadToken()
				if err != nil {
					return err
				}
				if token == "" || !client.UsableToken(token) {
					// A cache file that holds no usable token holds no
					// session either: it goes, and nothing is sent.
					if token != "" {
						if err := e.store.DeleteToken(); err != nil {
							return err
						}
					}
					return e.out.line("Not logged in to %s as %s: nothing to do.", e.client.ServerURL(), e.id)
				}
				err = e.client.Logout(e.ctx)
				if err != nil {
					return e.forgetAnyway(cmd, err, "the session stays live at tetherd until it idles out: run 'tether logout --all' once tetherd answers")
				}
				return e.out.line("Logged out of %s.", e.client.ServerURL())
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "end every session of your SPIFFE ID, with your SVID alone (no session needed)")
	return cmd
}

// logoutAll ends every session of the caller's SPIFFE ID with the SVID
// alone; RevokeOwn deletes the cache file (the client's token store).
func logoutAll(cmd *cobra.Command, e *env) error {
	n, err := e.client.RevokeOwn(e.ctx)
	if err != nil {
		return e.forgetAnyway(cmd, err, "no session was ended: run 'tether logout --all' again once tetherd answers")
	}
	return e.out.revoked(n, fmt.Sprintf("Ended %d %s of %s at %s; no token is cached for it now.", n, plural(n, "session", "sessions"), e.id, e.client.ServerURL()))
}

// forgetAnyway deletes the cache file after tetherd did not confirm a
// logout (err), and fails saying so and what then: logging out on this
// machine does not wait for tetherd. An interrupted logout (Ctrl-C), or one
// that failed before asking tetherd (a cache check), changes nothing.
func (e *env) forgetAnyway(cmd *cobra.Command, err error, then string) error {
	var local *cli.Error
	if cmd.Context().Err() != nil || errors.As(err, &local) {
		return err
	}
	if derr := e.store.DeleteToken(); derr != nil {
		return failf("%v; and the cached token could not be deleted: %v", e.explain(err), derr)
	}
	return failf("%v; the cached token is deleted anyway, but %s", e.explain(err), then)
}

// tokenCmd prints the session token.
func newTokenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "token",
		Short: "Print the session's token, for scripts",
		Long: `token prints the session's token alone on stdout (one line, whatever
--output says), for scripts and tools that call tetherd's API themselves.
Like the other commands it logs in when there is no session, rebinds the
session when your SVID has rotated and logs in again when it has ended; it
asks tetherd about the session first, so the token printed is live and bound
to the leaf certificate your SVID has now.

The token is worth nothing without that certificate's private key: tetherd
accepts it only over mTLS from that leaf, presented by your SPIFFE ID. After
your SVID rotates, run token again. Keep it out of logs anyway.`,
		Example: `  TOKEN=$(tether token)
  # then send "Authorization: Bearer $TOKEN" to tetherd over mTLS with the same SVID`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withEnv(g, cmd, true, func(e *env) error {
				if _, err := e.client.Whoami(e.ctx); err != nil {
					return err
				}
				token, err := e.store.LoadToken()
				if err != nil {
					return err
				}
				if token == "" {
					return failf("no session token was kept for %s at %s: run 'tether login'", e.id, e.client.ServerURL())
				}
				if _, err := fmt.Fprintln(cmd.OutOrStdout(), token); err != nil {
					return failf("write the output: %v", err)
				}
				return nil
			})
		},
	}
}

func newListCmd(g *globals) *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use:   "list [--spiffe-id ID]",
		Short: "List the live sessions, oldest first",
		Example: `  tether sessions list
  tether sessions list --spiffe-id spiffe://example.org/admin/alice
  tether sessions list -o json | jq -r '.sessions[].session_id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var id spiffeid.ID
			if cmd.Flags().Changed("spiffe-id") {
				var err error
				if id, err = spiffeid.FromString(filter); err != nil {
					return usagef("--spiffe-id: %q is not a SPIFFE ID: %v", filter, err)
				}
			}
			return withEnv(g, cmd, true, func(e *env) error {
				list, err := e.client.List(e.ctx, id)
				if err != nil {
					return err
				}
				return e.out.sessions(list)
			})
		},
	}
	cmd.Flags().StringVar(&filter, "spiffe-id", "", "only the sessions of this SPIFFE ID")
	return cmd
}

func newRevokeCmd(g *globals) *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use:   "revoke SESSION_ID | --spiffe-id ID",
		Short: "End one session, or every session of a SPIFFE ID",
		Example: `  tether sessions revoke 3q2-7w8eQ0ePl1iA2pG1Hg
  tether sessions revoke --spiffe-id spiffe://example.org/admin/mallory`,
		RunE: func(cmd *cobra.Command, args []string) error {
			byID := cmd.Flags().Changed("spiffe-id")
			switch {
			case byID && len(args) > 0:
				return usagef("sessions revoke: give SESSION_ID or --spiffe-id, not both")
			case !byID && len(args) != 1:
				return usagef("sessions revoke: give one SESSION_ID or --spiffe-id ID")
			case !byID:
				if err := checkSessionID("revoke", args[0]); err != nil {
					return err
				}
			}
			var id spiffeid.ID
			if byID {
				var err error
				if id, err = spiffeid.FromString(filter); err != nil {
					return usagef("--spiffe-id: %q is not a SPIFFE ID: %v", filter, err)
				}
			}
			return withEnv(g, cmd, true, func(e *env) error {
				if byID {
					n, err := e.client.RevokeIdentity(e.ctx, id)
					if err != nil {
						return err
					}
					return e.out.revoked(n, fmt.Sprintf("Revoked %d %s of %s.", n, plural(n, "session", "sessions"), id))
				}
				err := e.client.Revoke(e.ctx, args[0])
				if errors.Is(err, &api.Error{Code: api.CodeNotFound}) {
					return failf("no live session %s at %s (see 'tether sessions list')", args[0], e.client.ServerURL())
				}
				if err != nil {
					return err
				}
				return e.out.revoked(1, "Revoked session "+args[0]+".")
			})
		},
	}
	cmd.Flags().StringVar(&filter, "spiffe-id", "", "end every session of this SPIFFE ID")
	return cmd
}

// checkSessionID refuses, as a usage error, a SESSION_ID argument no
// session can have (see client.CheckSessionID), before anything is sent:
// 'self' above all, which would name the caller's own session.
func checkSessionID(verb, id string) error {
	err := client.CheckSessionID(id)
	switch {
	case err == nil:
		return nil
	case id == "self" && verb == "revoke":
		return usagef(`sessions revoke: "self" is not a session ID: to end your own session, run 'tether logout'`)
	default:
		return usagef("sessions %s: %v", verb, err)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// versionInfo is what version prints.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tether's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.outputFormat(cmd)
			if err != nil {
				return err
			}
			v := versionInfo{Version: cli.Version(), Go: runtime.Version()}
			p := &printer{w: cmd.OutOrStdout(), json: format == "json"}
			if p.json {
				return p.writeJSON(v)
			}
			return p.line("tether %s (%s)", v.Version, v.Go)
		},
	}
}
