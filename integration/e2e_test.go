package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproject/tether/integration/internal/probe"
	"github.com/tetherproject/tether/integration/internal/spire"
	"github.com/tetherproject/tether/integration/internal/wait"
	"github.com/tetherproject/tether/pkg/api"
)

// An admin logs in with the SVID the agent issued to her uid, uses the
// session, lists it and logs out; the non-admin is refused; the other admin
// logs in too.
func TestLoginUseLogout(t *testing.T) {
	s := need(t)
	alice := s.ids["alice"]

	r := s.do(t, "alice", login("", "t"))
	expect(t, "alice login", r, http.StatusCreated, "")
	sess := r.Session
	switch {
	case !r.GotToken || sess == nil:
		t.Fatalf("alice login: no token or session: %s", describe(r))
	case sess.SPIFFEID != alice.spiffeID:
		t.Errorf("session spiffe_id %s, want %s", sess.SPIFFEID, alice.spiffeID)
	case sess.CNF.X5TS256 != r.Client.Fingerprint:
		t.Errorf("session cnf %s, want the fingerprint of the leaf that logged in %s", sess.CNF.X5TS256, r.Client.Fingerprint)
	case strings.HasPrefix(sess.SessionID, "-") || len(sess.SessionID) < 22:
		t.Errorf("session_id %q: want ≥128 random bits, not beginning with '-'", sess.SessionID)
	case r.Server.SPIFFEID != tetherdID:
		t.Errorf("tetherd served %s, want %s", r.Server.SPIFFEID, tetherdID)
	}
	if c := r.TokenClaims; c == nil {
		t.Errorf("token claims unreadable: %s", r.Error)
	} else {
		if c.Iss != tetherdID || c.Sub != alice.spiffeID || c.Jti != sess.SessionID {
			t.Errorf("claims iss %q sub %q jti %q; want iss %s, sub %s, jti = session_id", c.Iss, c.Sub, c.Jti, tetherdID, alice.spiffeID)
		}
		if !bytes.Contains(c.Aud, []byte(`"`+tetherdID+`"`)) {
			t.Errorf("claim aud %s, want %s", c.Aud, tetherdID)
		}
		if c.Cnf == nil || c.Cnf.X5TS256 != r.Client.Fingerprint {
			t.Errorf("claim cnf %+v, want x5t#S256 %s", c.Cnf, r.Client.Fingerprint)
		}
		if c.Exp != sess.ExpiresAt.Unix() {
			t.Errorf("claim exp %d, want the session's expires_at %d", c.Exp, sess.ExpiresAt.Unix())
		}
	}

	r = s.do(t, "alice", self(http.MethodGet, "t", ""))
	expect(t, "alice GET self", r, http.StatusOK, "")
	if r.Session == nil || r.Session.SessionID != sess.SessionID {
		t.Fatalf("GET self: %+v, want session %s", r.Session, sess.SessionID)
	}
	r = s.do(t, "alice", probe.Command{Op: probe.OpRequest, Method: http.MethodGet, Path: api.PathSessions, Token: "t"})
	expect(t, "alice list", r, http.StatusOK, "")
	found := false
	for _, ls := range r.Sessions {
		found = found || ls.SessionID == sess.SessionID
	}
	if !found {
		t.Errorf("GET /v1/sessions does not list alice's session %s", sess.SessionID)
	}

	expect(t, "no token", s.do(t, "alice", self(http.MethodGet, "", "")), http.StatusUnauthorized, api.CodeMissingToken)

	expect(t, "alice logout", s.do(t, "alice", self(http.MethodDelete, "t", "")), http.StatusNoContent, "")
	expect(t, "after logout", s.do(t, "alice", self(http.MethodGet, "t", "")), http.StatusUnauthorized, api.CodeSessionEnded)

	expect(t, "non-admin login", s.do(t, "web", login("", "t")), http.StatusForbidden, api.CodeNotAdmin)

	r = s.do(t, "bob", login("", "t"))
	expect(t, "bob login", r, http.StatusCreated, "")
	if r.Session == nil || r.Session.SPIFFEID != s.ids["bob"].spiffeID {
		t.Errorf("bob's session: %+v", r.Session)
	}
	expect(t, "bob logout", s.do(t, "bob", self(http.MethodDelete, "t", "")), http.StatusNoContent, "")

	for _, path := range []string{api.PathHealthz, api.PathMetrics} {
		if code, err := s.tetherd.healthGet(t.Context(), path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %v", path, code, err)
		}
	}
}

// A token is worth nothing over another identity's mTLS connection: alice's
// token, copied to bob (an admin) and to the non-admin, is refused, and
// alice's session is not harmed by the attempts.
func TestCopiedTokenRejected(t *testing.T) {
	s := need(t)

	expect(t, "alice login", s.do(t, "alice", login("", "stolen")), http.StatusCreated, "")
	if r := s.do(t, "alice", probe.Command{Op: probe.OpSaveToken, Slot: "stolen", File: s.tokenFile("alice", "stolen")}); r.Error != "" {
		t.Fatal(r.Error)
	}
	for _, thief := range []string{"bob", "web"} {
		s.handTokenFile(t, "alice", thief, "stolen")
		if r := s.do(t, thief, probe.Command{Op: probe.OpLoadToken, Slot: "stolen", File: s.tokenFile(thief, "stolen")}); r.Error != "" {
			t.Fatal(r.Error)
		}
		expect(t, thief+" GET self with alice's token", s.do(t, thief, self(http.MethodGet, "stolen", "")), http.StatusUnauthorized, api.CodeInvalidToken)
		expect(t, thief+" rebind with alice's token", s.do(t, thief, rebind("stolen", "", "x")), http.StatusUnauthorized, api.CodeInvalidToken)
		expect(t, thief+" DELETE self with alice's token", s.do(t, thief, self(http.MethodDelete, "stolen", "")), http.StatusUnauthorized, api.CodeInvalidToken)
	}
	expect(t, "alice GET self after the attempts", s.do(t, "alice", self(http.MethodGet, "stolen", "")), http.StatusOK, "")

	// tetherd never logs a token.
	tok, err := os.ReadFile(s.tokenFile("alice", "stolen"))
	if err != nil {
		t.Fatal(err)
	}
	if logs, err := os.ReadFile(filepath.Join(s.spire.Dir(), "tetherd.log")); err == nil && len(tok) > 0 {
		sig := tok[bytes.LastIndexByte(tok, '.')+1:]
		if bytes.Contains(logs, tok) || (len(sig) > 16 && bytes.Contains(logs, sig)) {
			t.Error("tetherd's log contains alice's token")
		}
	}
	expect(t, "alice logout", s.do(t, "alice", self(http.MethodDelete, "stolen", "")), http.StatusNoContent, "")
}

// tetherd's own SVID (TTL tetherdSVIDTTL) rotates while it runs; new
// connections get the new leaf, with no restart, and sessions carry on.
func TestTetherdSVIDRotation(t *testing.T) {
	s := need(t)
	pid := s.tetherd.pid()

	// Pin alice's leaf: only tetherd's side may change here.
	s.do(t, "alice", pin("a"))
	r := s.do(t, "alice", login("a", "t"))
	expect(t, "alice login", r, http.StatusCreated, "")
	first := r.Server
	if left := time.Until(first.NotAfter); left > tetherdSVIDTTL+time.Second {
		t.Fatalf("tetherd's leaf %s has %s left: the entry's -x509SVIDTTL %s did not apply", short(first), left, tetherdSVIDTTL)
	}

	ctx, cancel := context.WithTimeout(t.Context(), tetherdSVIDTTL+15*time.Second)
	defer cancel()
	var last *probe.Leaf
	requests := 0
	err := wait.Until(ctx, 500*time.Millisecond, func(context.Context) error {
		r := s.do(t, "alice", self(http.MethodGet, "t", "a"))
		requests++
		if r.Error != "" || r.Status != http.StatusOK {
			return wait.Stop(fmt.Errorf("request %d during tetherd's rotation: %s", requests, describe(r)))
		}
		last = r.Server
		if last.Fingerprint == first.Fingerprint {
			return errors.New("tetherd still serves its first leaf")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d requests on new connections, tetherd's leaf went from %s to %s", requests, short(first), short(last))
	if last.SPIFFEID != tetherdID || last.Serial == first.Serial || !last.NotAfter.After(first.NotAfter) {
		t.Errorf("new leaf %s serial %s; first %s serial %s", short(last), last.Serial, short(first), first.Serial)
	}
	if got := s.tetherd.pid(); got != pid {
		t.Errorf("tetherd's pid went from %d to %d: it restarted", pid, got)
	}
	r = s.do(t, "alice", login("a", "t2"))
	expect(t, "alice login after tetherd's rotation", r, http.StatusCreated, "")
	expect(t, "alice logout", s.do(t, "alice", self(http.MethodDelete, "t", "a")), http.StatusNoContent, "")
	expect(t, "alice logout", s.do(t, "alice", self(http.MethodDelete, "t2", "a")), http.StatusNoContent, "")
}

// tetherd's only registration entry is deleted: the agent answers its watch
// with PermissionDenied and sends no update. tetherd is not ready at once
// (identity.pin_missing), long before the SVID it holds expires, and serves
// on that SVID, never another; with the entry back it is ready again
// (identity.pin_restored).
func TestTetherdEntryDeleted(t *testing.T) {
	s := need(t)
	s.do(t, "alice", pin("a"))
	r := s.do(t, "alice", login("a", "t"))
	expect(t, "alice login", r, http.StatusCreated, "")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	deleted := s.tEntry
	t.Cleanup(func() { s.recreateTetherdEntry(t, deleted) })
	if err := s.spire.DeleteEntry(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	held := s.do(t, "alice", self(http.MethodGet, "t", "a")).Server

	err := wait.Until(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		code, err := s.tetherd.readyz(ctx)
		if err != nil {
			return wait.Stop(fmt.Errorf("/readyz: %w", err))
		}
		if code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d", code)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	notReady := time.Now()
	t.Logf("not ready %s after the entry was deleted; the held SVID had %s left", notReady.Sub(gone).Round(time.Millisecond), held.NotAfter.Sub(notReady).Round(time.Millisecond))
	if !notReady.Before(held.NotAfter) {
		t.Fatalf("not ready only once the held SVID %s had expired: the deleted entry itself went unnoticed", short(held))
	}
	logs, _ := os.ReadFile(filepath.Join(s.spire.Dir(), "tetherd.log"))
	if !strings.Contains(string(logs), "identity.pin_missing") {
		t.Fatalf("no identity.pin_missing in tetherd.log")
	}
	if r := s.do(t, "alice", self(http.MethodGet, "t", "a")); time.Now().Before(held.NotAfter.Add(-time.Second)) && (r.Status != http.StatusOK || r.Server.SPIFFEID != tetherdID) {
		t.Errorf("with its entry gone and its SVID valid, tetherd should serve on it: %s", describe(r))
	}

	s.recreateTetherdEntry(t, deleted)
	logs, _ = os.ReadFile(filepath.Join(s.spire.Dir(), "tetherd.log"))
	if !strings.Contains(string(logs), "identity.pin_restored") {
		t.Errorf("no identity.pin_restored in tetherd.log")
	}
	expect(t, "alice login with the entry back", s.do(t, "alice", login("a", "t2")), http.StatusCreated, "")
}

// recreateTetherdEntry registers tetherd's entry again (once: a second call
// finds it there) and waits until tetherd is ready on it.
func (s *suite) recreateTetherdEntry(t *testing.T, deleted spire.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if s.tEntry.ID == deleted.ID {
		e := deleted
		e.ID = ""
		created, err := s.spire.CreateEntry(ctx, e)
		if err != nil {
			t.Fatalf("registering tetherd's entry again: %v", err)
		}
		s.tEntry = created
	}
	if err := s.tetherd.waitReady(ctx); err != nil {
		t.Fatalf("tetherd with its entry back: %v", err)
	}
}

// An admin's SVID rotates: the old token over the new leaf is refused with
// certificate_rotated; rebind over the new leaf keeps the session (same ID,
// same absolute end) with a new token; the old leaf and the old token are
// dead for it.
func TestAdminSVIDRotationRebind(t *testing.T) {
	s := need(t)
	alice := s.ids["alice"]

	// Short SVIDs for alice. Updating the entry makes the agent issue her a
	// new SVID within a sync interval; the next one comes at about half-life,
	// as in production.
	brief := alice.entry
	brief.X509SVIDTTL = adminSVIDTTL
	if err := s.spire.UpdateEntry(t.Context(), brief); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.restoreEntry(t, "alice") })
	r := s.do(t, "alice", probe.Command{Op: probe.OpWaitSVID, MaxTTL: adminSVIDTTL + time.Second, Timeout: 20 * time.Second})
	if r.Error != "" {
		t.Fatalf("alice's short-lived SVID: %s (last %s)", r.Error, short(r.SVID))
	}

	old := s.do(t, "alice", pin("old")).SVID
	r = s.do(t, "alice", login("old", "t1"))
	expect(t, "alice login", r, http.StatusCreated, "")
	sess := *r.Session
	expect(t, "alice GET self before rotation", s.do(t, "alice", self(http.MethodGet, "t1", "old")), http.StatusOK, "")

	r = s.do(t, "alice", probe.Command{Op: probe.OpWaitSVID, NotFingerprint: old.Fingerprint, Timeout: adminSVIDTTL + 10*time.Second})
	if r.Error != "" {
		t.Fatalf("alice's SVID did not rotate: %s", r.Error)
	}
	// Pin the new leaf too: with a 20s TTL the next rotation is only seconds
	// away, and the steps below must all use this one.
	rotated := s.do(t, "alice", pin("new")).SVID
	t.Logf("alice's leaf rotated from %s to %s", short(old), short(rotated))
	if rotated.SPIFFEID != alice.spiffeID || rotated.Fingerprint == old.Fingerprint {
		t.Fatalf("rotated SVID %s, old %s", short(rotated), short(old))
	}

	r = s.do(t, "alice", self(http.MethodGet, "t1", "new"))
	expect(t, "old token over the new leaf", r, http.StatusUnauthorized, api.CodeCertificateRotated)

	r = s.do(t, "alice", rebind("t1", "new", "t2"))
	expect(t, "rebind over the new leaf", r, http.StatusOK, "")
	switch {
	case !r.GotToken || r.Session == nil:
		t.Fatalf("rebind: no token or session: %s", describe(r))
	case r.Session.SessionID != sess.SessionID:
		t.Errorf("rebind changed the session: %s, was %s", r.Session.SessionID, sess.SessionID)
	case !r.Session.ExpiresAt.Equal(sess.ExpiresAt):
		t.Errorf("rebind moved the absolute end: %s, was %s", r.Session.ExpiresAt, sess.ExpiresAt)
	case r.Session.CNF.X5TS256 != r.Client.Fingerprint:
		t.Errorf("rebound session cnf %s, want the new leaf %s", r.Session.CNF.X5TS256, r.Client.Fingerprint)
	case r.TokenClaims == nil || r.TokenClaims.Cnf == nil || r.TokenClaims.Cnf.X5TS256 != r.Client.Fingerprint || r.TokenClaims.Jti != sess.SessionID:
		t.Errorf("new token's claims %+v: want jti %s and cnf of the new leaf %s", r.TokenClaims, sess.SessionID, r.Client.Fingerprint)
	}
	r = s.do(t, "alice", self(http.MethodGet, "t2", "new"))
	expect(t, "new token over the new leaf", r, http.StatusOK, "")
	if r.Session.SessionID != sess.SessionID {
		t.Errorf("GET self after rebind: session %s, want %s", r.Session.SessionID, sess.SessionID)
	}

	// The old leaf is still valid for a few seconds: it must not serve the
	// session any more, with either token.
	if left := time.Until(old.NotAfter); left < 3*time.Second {
		t.Fatalf("the old leaf has only %s left: too little to test that tetherd refuses it", left)
	}
	expectRefused(t, "old token over the old leaf", s.do(t, "alice", self(http.MethodGet, "t1", "old")))
	expect(t, "new token over the old leaf", s.do(t, "alice", self(http.MethodGet, "t2", "old")), http.StatusUnauthorized, api.CodeCertificateRotated)
	expectRefused(t, "old token over the new leaf after rebind", s.do(t, "alice", self(http.MethodGet, "t1", "new")))
	expectRefused(t, "rebind again with the old token", s.do(t, "alice", rebind("t1", "new", "t3")))

	expect(t, "alice logout", s.do(t, "alice", self(http.MethodDelete, "t2", "new")), http.StatusNoContent, "")
}

// The agent dies: tetherd keeps serving on the SVID it holds, /readyz stays
// 200 until that SVID expires and then turns 503; when the agent is back,
// tetherd gets a new SVID and is ready again, sessions intact.
func TestAgentOutage(t *testing.T) {
	s := need(t)
	s.do(t, "alice", pin("a"))
	expect(t, "alice login", s.do(t, "alice", login("a", "t")), http.StatusCreated, "")

	if err := s.spire.KillAgent(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Log("agent killed")

	r := s.do(t, "alice", self(http.MethodGet, "t", "a"))
	expect(t, "alice GET self with the agent down", r, http.StatusOK, "")
	held := r.Server
	t.Logf("tetherd holds %s", short(held))
	if time.Until(held.NotAfter) <= 0 {
		t.Fatalf("tetherd served an expired leaf %s", short(held))
	}

	// Until the held SVID expires, /readyz says 200 and the API serves on it;
	// after that, 503. A tolerance of one second before NotAfter allows for
	// a tetherd that stops a hair early rather than late.
	const early = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), time.Until(held.NotAfter)+10*time.Second)
	defer cancel()
	var notReady time.Time
	lastAPI := time.Now()
	served := 1
	err := wait.Until(ctx, 250*time.Millisecond, func(ctx context.Context) error {
		now := time.Now()
		code, err := s.tetherd.readyz(ctx)
		if err != nil {
			return wait.Stop(fmt.Errorf("/readyz: %w", err))
		}
		switch code {
		case http.StatusOK:
			if now.Before(held.NotAfter.Add(-early)) && now.Sub(lastAPI) > 2*time.Second {
				lastAPI = now
				r := s.do(t, "alice", self(http.MethodGet, "t", "a"))
				if r.Error != "" && time.Now().After(held.NotAfter.Add(-early)) {
					return errors.New("the held SVID expired during the request")
				}
				if r.Error != "" || r.Status != http.StatusOK || r.Server.Fingerprint != held.Fingerprint {
					return wait.Stop(fmt.Errorf("with the agent down for %s, tetherd did not serve on its held SVID: %s",
						now.Sub(killed).Round(time.Millisecond), describe(r)))
				}
				served++
			}
			return fmt.Errorf("/readyz still 200, %s after the held SVID's expiry", now.Sub(held.NotAfter).Round(time.Millisecond))
		case http.StatusServiceUnavailable:
			if now.Before(held.NotAfter.Add(-early)) {
				return wait.Stop(fmt.Errorf("/readyz turned 503 %s before the held SVID expired", held.NotAfter.Sub(now).Round(time.Millisecond)))
			}
			notReady = now
			return nil
		default:
			return wait.Stop(fmt.Errorf("/readyz: unexpected status %d", code))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent down %s: tetherd served %d requests on its held SVID; /readyz turned 503 %s after it expired",
		notReady.Sub(killed).Round(time.Millisecond), served, notReady.Sub(held.NotAfter).Round(time.Millisecond))

	r = s.do(t, "alice", self(http.MethodGet, "t", "a"))
	if r.Error == "" && r.Status == http.StatusOK {
		t.Errorf("with its SVID expired, tetherd still served a request: %s", describe(r))
	}

	if err := s.spire.StartAgent(t.Context()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel2()
	if err := s.tetherd.waitReady(ctx2); err != nil {
		t.Fatalf("after the agent came back: %v", err)
	}
	t.Logf("tetherd ready again %s after the agent came back", time.Since(back).Round(time.Millisecond))

	r = s.do(t, "alice", self(http.MethodGet, "t", "a"))
	expect(t, "alice's session after the outage", r, http.StatusOK, "")
	if r.Server.Fingerprint == held.Fingerprint || !r.Server.NotAfter.After(time.Now()) {
		t.Errorf("after the outage tetherd serves %s; want a new, valid leaf", short(r.Server))
	}

	// A restarted agent issues new SVIDs (its SVID cache is in memory): for
	// alice that is a rotation like any other, and her session carries on
	// through rebind.
	before := r.Client // pinned before the outage
	r = s.do(t, "alice", probe.Command{Op: probe.OpWaitSVID, NotFingerprint: before.Fingerprint, Timeout: 30 * time.Second})
	if r.Error != "" {
		t.Fatalf("alice's SVID after the agent restart (was %s): %s", short(before), r.Error)
	}
	expect(t, "alice's token over her SVID from the restarted agent", s.do(t, "alice", self(http.MethodGet, "t", "")),
		http.StatusUnauthorized, api.CodeCertificateRotated)
	expect(t, "alice rebind after the agent restart", s.do(t, "alice", rebind("t", "", "t")), http.StatusOK, "")
	expect(t, "alice logout", s.do(t, "alice", self(http.MethodDelete, "t", "")), http.StatusNoContent, "")
}

// A tetherd restart ends every session: its signing key and its sessions
// lived only in its memory.
func TestTetherdRestartEndsSessions(t *testing.T) {
	s := need(t)
	for _, who := range []string{"alice", "bob"} {
		s.do(t, who, pin("r"))
		expect(t, who+" login", s.do(t, who, login("r", "t")), http.StatusCreated, "")
		expect(t, who+" GET self", s.do(t, who, self(http.MethodGet, "t", "r")), http.StatusOK, "")
	}

	code, err := s.tetherd.stop()
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("tetherd exited %d after SIGTERM, want 0", code)
	}
	if err := s.tetherd.start(t.Context()); err != nil {
		t.Fatal(err)
	}

	for _, who := range []string{"alice", "bob"} {
		expect(t, who+"'s token after the restart", s.do(t, who, self(http.MethodGet, "t", "r")), http.StatusUnauthorized, api.CodeInvalidToken)
		r := s.do(t, who, login("r", "t"))
		expect(t, who+" login after the restart", r, http.StatusCreated, "")
		expect(t, who+" logout", s.do(t, who, self(http.MethodDelete, "t", "r")), http.StatusNoContent, "")
	}
}

// restoreEntry puts a workload's entry back as registered (default TTL) and
// waits until its probe holds a long-lived SVID again, so later tests do not
// see it rotate.
func (s *suite) restoreEntry(t *testing.T, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.spire.UpdateEntry(ctx, s.ids[who].entry); err != nil {
		t.Errorf("restoring %s's entry: %v", who, err)
		return
	}
	r, err := s.probes[who].Do(ctx, probe.Command{Op: probe.OpWaitSVID, MinTTL: 30 * time.Minute, Timeout: 20 * time.Second})
	if err != nil || r.Error != "" {
		t.Errorf("%s's SVID after restoring the entry: %v %s", who, err, r.Error)
	}
}
