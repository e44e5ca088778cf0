package main

// Roles and the two-person rule on the command line: login --role [--wait],
// sessions approve|deny, and what a command says when tetherd refuses a
// session that waits for approval.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// defaultWaitInterval is how often login --wait asks tetherd whether the
// session has been approved: a person approves within seconds at best, and
// each ask of a pending session is a refusal tetherd counts.
const defaultWaitInterval = 2 * time.Second

func newLoginCmd(g *globals) *cobra.Command {
	var (
		roleArgs []string
		wait     bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "login [--role NAME]... [--wait]",
		Short: "Start a session (ending the one cached before, if any)",
		Long: `login starts a new session at tetherd for your SPIFFE ID and caches its token.
A session cached before is ended first. Only an --admin of tetherd may log in.
Other commands log in by themselves when needed; login is for starting afresh.

Without --role, the session holds the roles of your identity that need no
approval and have no shorter lifetime of their own (tetherd's --role flags).
--role NAME asks for roles (repeatable, or comma-separated): the session
then holds exactly those, and a role your identity may not hold is refused.
A role that needs approval (tetherd's --role-approvals) makes the session
pending: login returns at once, shows the session and the command another
admin allowed to approve it runs ('tether sessions approve SESSION_ID');
tetherd refuses the session's token until then, and 'tether whoami' exits
0 once it is approved. With --wait, login waits until then: exit 0 once
approved, 1 if it is denied or ends first, 130 on Ctrl-C (the session stays
pending). With -o json, --wait prints the pending session, then the active
one.`,
		Example: `  tether login
  tether login --output json | jq -r .session.expires_at
  tether login --role breakglass --wait     # then another admin: tether sessions approve SESSION_ID`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usagef("--wait-interval: must be positive")
			}
			var roles []string
			for _, arg := range roleArgs {
				for _, r := range strings.Split(arg, ",") {
					if r = strings.TrimSpace(r); r == "" {
						return usagef("--role: %q: an empty role name", arg)
					}
					roles = append(roles, r)
				}
			}
			return withEnv(g, cmd, true, func(e *env) error {
				// Best effort: do not leave the old session behind to idle out.
				_ = e.client.Logout(e.ctx)
				s, err := e.client.LoginRoles(e.ctx, roles...)
				if err != nil {
					return err
				}
				if s.State != api.StatePending {
					return e.out.session(fmt.Sprintf("Logged in to %s.", e.client.ServerURL()), s)
				}
				if err := e.out.pending(e.client.ServerURL(), s, wait); err != nil || !wait {
					return err
				}
				s, err = waitApproved(cmd.Context(), e, s, interval)
				if err != nil {
					return err
				}
				return e.out.session(approvedBy(s), s)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&roleArgs, "role", nil, "ask for role NAME (repeatable, or NAME,NAME): the session holds exactly these")
	f.BoolVar(&wait, "wait", false, "if the session waits for approval, wait until it is approved (exit 0), denied or ended (exit 1)")
	f.DurationVar(&interval, "wait-interval", defaultWaitInterval, "how often --wait asks tetherd")
	_ = f.MarkHidden("wait-interval")
	return cmd
}

// waitApproved asks tetherd about the pending session s every interval
// until it is active, and returns it then. It fails when the session ends
// first (denied, idle, revoked) or tetherd refuses it otherwise; ctx's end
// (Ctrl-C) stops it. It asks with a client that never logs in: a new
// session is no answer.
func waitApproved(ctx context.Context, e *env, s *api.Session, interval time.Duration) (*api.Session, error) {
	c, err := e.newClient(false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		ask, cancel := context.WithTimeout(ctx, requestTimeout)
		active, err := c.Whoami(ask)
		cancel()
		var apiErr *client.Error
		switch {
		case err == nil:
			if active.SessionID != s.SessionID {
				return nil, failf("the cached session is no longer %s (another tether login replaced it)", s.SessionID)
			}
			return active, nil
		case errors.As(err, &apiErr) && apiErr.Code == api.CodeApprovalPending:
			continue
		case errors.As(err, &apiErr) && apiErr.Code == api.CodeSessionEnded:
			return nil, failf("session %s was denied, or ended before it was approved (revoked, or pending past tetherd's --idle-timeout): run 'tether login%s' to ask again", s.SessionID, roleFlags(s.Roles))
		default:
			return nil, err
		}
	}
}

func newDecideCmd(g *globals, approve bool) *cobra.Command {
	verb, done, short := "approve", "Approved", "Approve a session that waits for approval (two-person rule)"
	if !approve {
		verb, done, short = "deny", "Denied", "Deny a session that waits for approval: it ends"
	}
	return &cobra.Command{
		Use:   verb + " SESSION_ID",
		Short: short,
		Long: `sessions ` + verb + ` answers another admin's request for roles that need approval
(tetherd's --role-approvals), as your session: tetherd allows it only to
identities the roles' --role-approvers name (by default any --admin), never
to the requester. An approval counts once per identity; the session is
active once it has as many as its roles need. A denial ends it. Pending
sessions show in 'tether sessions list' with the state pending.`,
		Example: `  tether sessions list          # STATE pending: the ones waiting
  tether sessions ` + verb + ` fsmtarswidwd5iarlgdern3n24`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("sessions %s: give one SESSION_ID, as 'tether sessions list' shows", verb)
			}
			id := args[0]
			if err := checkSessionID(verb, id); err != nil {
				return err
			}
			return withEnv(g, cmd, true, func(e *env) error {
				decide := e.client.Deny
				if approve {
					decide = e.client.Approve
				}
				s, err := decide(e.ctx, id)
				var apiErr *client.Error
				if errors.As(err, &apiErr) {
					switch apiErr.Code {
					case api.CodeNotFound:
						return failf("no live session %s at %s (see 'tether sessions list')", id, e.client.ServerURL())
					case api.CodeBadRequest:
						return failf("session %s does not wait for approval: it is active already", id)
					case api.CodeForbidden:
						return failf("tetherd does not let %s %s session %s: %s", e.id, verb, id, apiErr.Message)
					case api.CodeApprovalPending: // the approver's own session, not id
						return failf("your cached session cannot %s anything: %v", verb, e.explainPending())
					}
				}
				if err != nil {
					return err
				}
				what := fmt.Sprintf("%s session %s of %s%s", done, s.SessionID, s.SPIFFEID, roleNote(s.Roles))
				switch {
				case !approve:
					what += ": it has ended."
				case s.State == api.StateActive:
					what += ": it is active now."
				default:
					what += fmt.Sprintf(": it waits for more approvals (%d so far).", len(s.Approvals))
				}
				return e.out.decided(s, what)
			})
		},
	}
}

// approvedBy is login --wait's headline once the session is active.
func approvedBy(s *api.Session) string {
	var ids []string
	for _, a := range s.Approvals {
		ids = append(ids, a.SPIFFEID)
	}
	if len(ids) == 0 {
		return "Approved."
	}
	return "Approved by " + strings.Join(ids, ", ") + "."
}

// roleNote is " (role a)" or " (roles a, b)"; "" without roles.
func roleNote(roles []string) string {
	switch len(roles) {
	case 0:
		return ""
	case 1:
		return " (role " + roles[0] + ")"
	default:
		return " (roles " + strings.Join(roles, ", ") + ")"
	}
}

// roleFlags is " --role a --role b" for the roles of a session.
func roleFlags(roles []string) string {
	var b strings.Builder
	for _, r := range roles {
		b.WriteString(" --role " + r)
	}
	return b.String()
}

// pendingClaims are what tether shows of its cached token when tetherd
// refuses it as pending: the session ID and the roles asked for. They are
// read from the token's payload without checking its signature: they only
// word a message; tetherd decides.
type pendingClaims struct {
	SessionID string   `json:"jti"`
	Roles     []string `json:"roles"`
}

// maxTokenBytes bounds the token read: tetherd's are at most 4 KiB.
const maxTokenBytes = 4 << 10

// readClaims reads the claims of a compact JWS; ok is false for anything
// else.
func readClaims(token string) (c pendingClaims, ok bool) {
	parts := strings.Split(token, ".")
	if len(token) > maxTokenBytes || len(parts) != 3 {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil || c.SessionID == "" || strings.HasPrefix(c.SessionID, "-") ||
		strings.ContainsFunc(c.SessionID, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\'' }) {
		return pendingClaims{}, false
	}
	for _, r := range c.Roles {
		if r == "" || strings.ContainsFunc(r, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			c.Roles = nil // not ours: show none rather than a terminal's control codes
			break
		}
	}
	return c, true
}

// explainPending is the failure of a command whose cached session waits
// for approval: which session, and what an approver runs.
func (e *env) explainPending() error {
	token, err := e.store.LoadToken()
	c, ok := readClaims(token)
	if err != nil || !ok {
		return failf("the session waits for approval: an approver runs 'tether sessions approve SESSION_ID' (its ID is in their 'tether sessions list')")
	}
	return failf("session %s%s waits for approval: an approver runs 'tether sessions approve %s'", c.SessionID, roleNote(c.Roles), c.SessionID)
}
