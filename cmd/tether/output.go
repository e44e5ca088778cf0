package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tetherproject/tether/pkg/api"
)

// printer writes results as text for people or as the API's JSON objects.
type printer struct {
	w    io.Writer
	json bool
	now  func() time.Time
}

func (p *printer) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

func (p *printer) writeJSON(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return failf("write the output: %v", err)
	}
	return nil
}

// session prints one session (login, whoami).
func (p *printer) session(headline string, s *api.Session) error {
	if p.json {
		return p.writeJSON(api.SessionResponse{Session: *s})
	}
	now := p.clock()
	var b strings.Builder
	if headline != "" {
		b.WriteString(headline + "\n")
	}
	fmt.Fprintf(&b, "SPIFFE ID:\t%s\n", s.SPIFFEID)
	fmt.Fprintf(&b, "Session:\t%s\n", s.SessionID)
	fmt.Fprintf(&b, "Bound to:\tcertificate x5t#S256 %s\n", s.CNF.X5TS256)
	fmt.Fprintf(&b, "Roles:\t%s\n", rolesText(s.Roles, "none"))
	fmt.Fprintf(&b, "State:\t%s\n", stateText(s))
	for i, a := range s.Approvals {
		label := ""
		if i == 0 {
			label = "Approved:"
		}
		fmt.Fprintf(&b, "%s\tby %s, %s\n", label, a.SPIFFEID, relative(a.At, now))
	}
	fmt.Fprintf(&b, "Created:\t%s\n", relative(s.CreatedAt, now))
	fmt.Fprintf(&b, "Last used:\t%s\n", relative(s.LastUsedAt, now))
	fmt.Fprintf(&b, "Expires:\t%s (%s)\n", relative(s.ExpiresAt, now), s.ExpiresAt.Local().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Idle end:\t%s unless used\n", relative(s.IdleExpiresAt, now))
	return p.table(b.String())
}

// sessions prints a list of sessions as an aligned table.
func (p *printer) sessions(list []api.Session) error {
	if p.json {
		return p.writeJSON(api.SessionsResponse{Sessions: list})
	}
	if len(list) == 0 {
		return p.line("no live sessions")
	}
	now := p.clock()
	var b strings.Builder
	b.WriteString("SESSION ID\tSPIFFE ID\tSTATE\tCREATED\tLAST USED\tEXPIRES\tIDLE END\tROLES\n")
	for _, s := range list {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.SessionID, s.SPIFFEID, stateText(&s),
			relative(s.CreatedAt, now), relative(s.LastUsedAt, now),
			relative(s.ExpiresAt, now), relative(s.IdleExpiresAt, now), rolesText(s.Roles, "-"))
	}
	return p.table(b.String())
}

// pending prints a session that login started and that waits for approval,
// and what an approver runs; waiting says login --wait waits for it. In
// JSON, the session alone.
func (p *printer) pending(server string, s *api.Session, waiting bool) error {
	if p.json {
		return p.session("", s)
	}
	if err := p.session(fmt.Sprintf("Logged in to %s: the session waits for approval.", server), s); err != nil {
		return err
	}
	then := "Until then tetherd refuses its token; 'tether whoami' succeeds once it is approved."
	if waiting {
		then = "Waiting for the approval (Ctrl-C stops waiting; the session stays pending)..."
	}
	what := "its roles"
	switch len(s.Roles) {
	case 1:
		what = "role " + s.Roles[0]
	case 0:
	default:
		what = "roles " + strings.Join(s.Roles, ", ")
	}
	return p.line("\nAn approver (another admin allowed to approve %s) runs:\n  tether sessions approve %s\n%s", what, s.SessionID, then)
}

// decided prints the session an approval or denial answered: a line for
// people, the API's object in JSON.
func (p *printer) decided(s *api.Session, text string) error {
	if p.json {
		return p.writeJSON(api.SessionResponse{Session: *s})
	}
	return p.line("%s", text)
}

// rolesText is the roles, comma-separated, or none.
func rolesText(roles []string, none string) string {
	if len(roles) == 0 {
		return none
	}
	return strings.Join(roles, ",")
}

// stateText is a session's state, with its approvals while pending.
func stateText(s *api.Session) string {
	switch {
	case s.State == "":
		return "-" // a tetherd from before roles
	case s.State == api.StatePending && len(s.Approvals) > 0:
		return fmt.Sprintf("%s (%d %s)", s.State, len(s.Approvals), plural(len(s.Approvals), "approval", "approvals"))
	default:
		return s.State
	}
}

// table writes tab-separated text as aligned columns.
func (p *printer) table(text string) error {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	if _, err := io.WriteString(tw, text); err != nil {
		return failf("write the output: %v", err)
	}
	if err := tw.Flush(); err != nil {
		return failf("write the output: %v", err)
	}
	return nil
}

// revoked prints how many sessions a revoke ended.
func (p *printer) revoked(n int, text string) error {
	if p.json {
		return p.writeJSON(api.RevokeResponse{Revoked: n})
	}
	return p.line("%s", text)
}

// line prints a line of text; nothing in JSON mode.
func (p *printer) line(format string, args ...any) error {
	if p.json {
		return nil
	}
	if _, err := fmt.Fprintf(p.w, format+"\n", args...); err != nil {
		return failf("write the output: %v", err)
	}
	return nil
}

// relative says when t is as seen from now: "in 7h59m", "3m12s ago",
// "just now".
func relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case t.IsZero():
		return "-"
	case d > -time.Second && d < time.Second:
		return "just now"
	case d > 0:
		return "in " + shortDuration(d)
	default:
		return shortDuration(-d) + " ago"
	}
}

// shortDuration is d to two units at most: 45s, 14m59s, 7h59m, 3d4h.
func shortDuration(d time.Duration) string {
	d = d.Truncate(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
