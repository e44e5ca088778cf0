package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproject/tether/integration/internal/probe"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/pkg/api"
)

// cli runs the tether CLI as the user of who, with its SVID from the agent's
// Workload API and its token cache in that user's folder. It returns the
// exit code, stdout and stderr.
func (s *suite) cli(t *testing.T, who string, args ...string) (int, string, string) {
	t.Helper()
	id := s.ids[who]
	full := append([]string{"-u", id.user, "--", "env",
		"TETHER_CACHE_DIR=" + filepath.Join(id.dir, "cache"),
		filepath.Join(s.bin, "tether"),
		"--server", "https://" + s.tetherd.listen,
		"--server-id", tetherdID,
		"--workload-api", s.spire.WorkloadAPIAddr(),
	}, args...)
	p := testproc.Exec(t, testproc.Config{Name: "tether " + strings.Join(args, " ") + " as " + who, Path: "runuser", Args: full}, 60*time.Second)
	if p.ExitCode() < 0 {
		t.Fatalf("tether %s as %s: %v", strings.Join(args, " "), who, p.WaitErr())
	}
	return p.ExitCode(), p.Stdout(), p.Stderr()
}

func (s *suite) cliJSON(t *testing.T, who string, v any, args ...string) {
	t.Helper()
	code, out, errOut := s.cli(t, who, append(args, "--output", "json")...)
	if code != 0 {
		t.Fatalf("tether %s as %s: exit %d: %s", strings.Join(args, " "), who, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("tether %s as %s: not JSON: %v\n%s", strings.Join(args, " "), who, err, out)
	}
}

// TestCLIWithSPIRE drives the real tether CLI with SVIDs from the real agent:
// an admin logs in, lists and revokes; the non-admin is refused with one
// actionable line; after the admin's SVID rotates, the CLI rebinds the same
// session by itself.
func TestCLIWithSPIRE(t *testing.T) {
	s := need(t)

	var login api.SessionResponse
	s.cliJSON(t, "alice", &login, "login")
	if login.Session.SPIFFEID != s.ids["alice"].spiffeID || login.Session.SessionID == "" {
		t.Fatalf("login: %+v", login.Session)
	}
	var who api.SessionResponse
	s.cliJSON(t, "alice", &who, "whoami")
	if who.Session.SessionID != login.Session.SessionID {
		t.Fatalf("whoami: session %s, want %s", who.Session.SessionID, login.Session.SessionID)
	}
	var list api.SessionsResponse
	s.cliJSON(t, "bob", &list, "sessions", "list", "--spiffe-id", s.ids["alice"].spiffeID)
	if len(list.Sessions) != 1 || list.Sessions[0].SessionID != login.Session.SessionID {
		t.Fatalf("bob lists alice's sessions: %+v", list.Sessions)
	}

	code, _, errOut := s.cli(t, "web", "login")
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "not an admin") {
		t.Fatalf("non-admin login: exit %d, stderr %q; want 1 and one line saying not an admin", code, errOut)
	}

	// alice's SVID rotates: her next command rebinds the same session.
	brief := s.ids["alice"].entry
	brief.X509SVIDTTL = adminSVIDTTL
	if err := s.spire.UpdateEntry(t.Context(), brief); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.restoreEntry(t, "alice") })
	r := s.do(t, "alice", probe.Command{Op: probe.OpWaitSVID, NotFingerprint: login.Session.CNF.X5TS256, Timeout: adminSVIDTTL + 10*time.Second})
	if r.Error != "" {
		t.Fatalf("alice's SVID did not rotate: %s", r.Error)
	}
	s.cliJSON(t, "alice", &who, "whoami")
	switch {
	case who.Session.SessionID != login.Session.SessionID:
		t.Fatalf("after rotation whoami shows session %s, want the rebound %s", who.Session.SessionID, login.Session.SessionID)
	case who.Session.CNF.X5TS256 == login.Session.CNF.X5TS256:
		t.Fatalf("after rotation the session is still bound to the old leaf %s", who.Session.CNF.X5TS256)
	case !who.Session.ExpiresAt.Equal(login.Session.ExpiresAt):
		t.Fatalf("rebind moved the absolute end: %s, was %s", who.Session.ExpiresAt, login.Session.ExpiresAt)
	}

	var revoked api.RevokeResponse
	s.cliJSON(t, "bob", &revoked, "sessions", "revoke", "--spiffe-id", s.ids["alice"].spiffeID)
	if revoked.Revoked != 1 {
		t.Fatalf("revoke alice's sessions: %d, want 1", revoked.Revoked)
	}
	if code, _, errOut := s.cli(t, "alice", "whoami"); code != 1 {
		t.Fatalf("whoami after revocation: exit %d (%s), want 1", code, errOut)
	}
	if code, _, errOut := s.cli(t, "alice", "logout"); code != 0 {
		t.Fatalf("logout: exit %d: %s", code, errOut)
	}
	if code, _, errOut := s.cli(t, "bob", "logout"); code != 0 {
		t.Fatalf("bob logout: exit %d: %s", code, errOut)
	}
}
