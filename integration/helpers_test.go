package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetherproject/tether/integration/internal/probe"
	"github.com/tetherproject/tether/pkg/api"
)

// do runs c on the probe of the workload who, and fails the test if the probe
// does not answer (a failed op is a Result with Error set).
func (s *suite) do(t *testing.T, who string, c probe.Command) probe.Result {
	t.Helper()
	p, ok := s.probes[who]
	if !ok {
		t.Fatalf("no probe %q", who)
	}
	ctx, cancel := context.WithTimeout(t.Context(), c.Timeout+30*time.Second)
	defer cancel()
	r, err := p.Do(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// login is POST /v1/sessions over leaf (a pinned SVID, or the current one if
// empty); the token goes into slot save.
func login(leaf, save string) probe.Command {
	return probe.Command{Op: probe.OpRequest, Method: http.MethodPost, Path: api.PathSessions, Leaf: leaf, SaveToken: save}
}

// self is METHOD /v1/sessions/self with the token in slot token over leaf.
func self(method, token, leaf string) probe.Command {
	return probe.Command{Op: probe.OpRequest, Method: method, Path: api.PathSessionsSelf, Token: token, Leaf: leaf}
}

// rebind is POST /v1/sessions/self/rebind with the token in slot token over
// leaf; the new token goes into slot save.
func rebind(token, leaf, save string) probe.Command {
	return probe.Command{Op: probe.OpRequest, Method: http.MethodPost, Path: api.PathRebind, Token: token, Leaf: leaf, SaveToken: save}
}

// pin keeps the probe's current SVID under name.
func pin(name string) probe.Command { return probe.Command{Op: probe.OpPin, Slot: name} }

// expect fails the test unless r is an answer with status and (for errors)
// code, and a 401 carries the contract's WWW-Authenticate challenge.
func expect(t *testing.T, what string, r probe.Result, status int, code api.Code) {
	t.Helper()
	if r.Error != "" || r.Status != status || r.Code != code {
		t.Fatalf("%s: got %s; want status %d code %q", what, describe(r), status, code)
	}
	if status == http.StatusUnauthorized {
		if want := api.WWWAuthenticate(code); r.WWWAuthenticate != want {
			t.Errorf("%s: WWW-Authenticate %q, want %q", what, r.WWWAuthenticate, want)
		}
	}
}

// expectRefused fails the test unless r is a 401: for cases where the
// contract says "dead" without naming the code.
func expectRefused(t *testing.T, what string, r probe.Result) {
	t.Helper()
	if r.Error != "" || r.Status != http.StatusUnauthorized {
		t.Fatalf("%s: got %s; want 401", what, describe(r))
	}
	t.Logf("%s: 401 %s", what, r.Code)
}

// describe summarises a result for a failure message. Results never hold a
// token.
func describe(r probe.Result) string {
	s := fmt.Sprintf("status %d code %q message %q", r.Status, r.Code, r.Message)
	if r.Error != "" {
		s += fmt.Sprintf(" error %q", r.Error)
	}
	if r.Client != nil {
		s += " client leaf " + short(r.Client)
	}
	if r.Server != nil {
		s += " server leaf " + short(r.Server)
	}
	return s
}

// short names a leaf by the start of its fingerprint and its expiry.
func short(l *probe.Leaf) string {
	if l == nil {
		return "<none>"
	}
	fp := l.Fingerprint
	if len(fp) > 10 {
		fp = fp[:10]
	}
	return fmt.Sprintf("%s… (%s, expires %s)", fp, l.SPIFFEID, l.NotAfter.Format(time.TimeOnly))
}

// tokenFile is the path of a token file in the workload's own folder.
func (s *suite) tokenFile(who, name string) string {
	return filepath.Join(s.ids[who].dir, name)
}

// handTokenFile copies a token file from one workload's folder to another's,
// owned by the receiver: as an attacker who stole it would.
func (s *suite) handTokenFile(t *testing.T, from, to, name string) {
	t.Helper()
	b, err := os.ReadFile(s.tokenFile(from, name))
	if err != nil {
		t.Fatal(err)
	}
	id := s.ids[to]
	if err := probe.WriteFileAs(s.tokenFile(to, name), b, id.uid, id.gid); err != nil {
		t.Fatal(err)
	}
}
