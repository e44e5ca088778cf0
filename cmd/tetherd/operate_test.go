package main

// Operating tetherd, tested on the real binary: the identity it serves as
// (--spiffe-id among several SVIDs, and never another), what it logs about
// its own SVID, its build and SVID-expiry metrics, --version. The process
// handle and the fake Workload API are the fault tests' (ftProc, ftFake);
// every wait is for an event, an answer or an exit, with a deadline.

import (
	"bytes"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/svid"
)

// opOtherID is another registration entry of the same workload as tetherd.
const opOtherID = "spiffe://example.org/billing"

// opEnv is the test's environment without TETHERD_ variables or
// SPIFFE_ENDPOINT_SOCKET, plus extra.
func opEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) && !strings.HasPrefix(kv, "SPIFFE_ENDPOINT_SOCKET=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPinnedAmongSeveralSVIDs: the workload gets two SVIDs, tetherd's own
// second. With --spiffe-id it serves that one; when the agent stops handing
// it out, tetherd says so once, is not ready, and goes on presenting the
// last SVID with its ID, never the other; when it is back (rotated), it is
// ready again and logs the rotation.
func TestPinnedAmongSeveralSVIDs(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	other, own := ca.Issue(t, opOtherID), ca.Issue(t, ftServerID)
	fw := ftFake(t, ca, other, own)
	admin := ca.Issue(t, ftAdminID)
	ownFP := svid.Fingerprint(own.Certificates[0])

	p := ftStartEnv(t, opEnv("TETHERD_SPIFFE_ID="+ftServerID), "--workload-api", fw.Addr(), "--admin", "spiffe://example.org/admin/*")
	if id := p.serving()["spiffe_id"]; id != ftServerID {
		t.Fatalf("tetherd.started spiffe_id=%v, want %s", id, ftServerID)
	}
	p.waitReady(http.StatusOK, 10*time.Second)
	if fp := p.servedLeaf(admin); fp != ownFP {
		t.Fatalf("serving %q, want its own SVID %q", fp, ownFP)
	}
	if evs := p.Events("identity.ambiguous"); len(evs) != 0 {
		t.Fatalf("pinned, yet identity.ambiguous: %v", evs)
	}
	conf := p.Event(t, "tetherd.config", 1, time.Second)
	if got, want := conf["settings"].(map[string]any)["spiffe_id"], map[string]any{"value": ftServerID, "from": "env"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("tetherd.config spiffe_id %v, want %v", got, want)
	}

	// The agent no longer hands out tetherd's SVID.
	must(t, fw.SetSVIDs(ca.Bundle(), other))
	if body := p.waitReady(http.StatusServiceUnavailable, 10*time.Second); !strings.Contains(body, ftServerID) || !strings.Contains(body, opOtherID) {
		t.Fatalf("/readyz 503 says %q, want the pinned and the offered IDs", body)
	}
	missing := p.Event(t, "identity.pin_missing", 1, 10*time.Second)
	if missing["level"] != "ERROR" || missing["spiffe_id"] != ftServerID || !reflect.DeepEqual(missing["offered"], []any{opOtherID}) {
		t.Fatalf("identity.pin_missing %v", missing)
	}
	if fp := p.servedLeaf(admin); fp != ownFP {
		t.Fatalf("serving %q, want the last SVID with the pinned ID, never the other", fp)
	}

	// Back, rotated.
	rotated := ca.Issue(t, ftServerID)
	must(t, fw.SetSVIDs(ca.Bundle(), other, rotated))
	p.waitReady(http.StatusOK, 10*time.Second)
	p.Event(t, "identity.pin_restored", 1, 10*time.Second)
	rot := p.Event(t, "identity.rotated", 1, 10*time.Second)
	if rot["fingerprint"] != svid.Fingerprint(rotated.Certificates[0]) || rot["previous_fingerprint"] != ownFP {
		t.Fatalf("identity.rotated %v", rot)
	}
	if n := len(p.Events("identity.pin_missing")); n != 1 {
		t.Fatalf("%d identity.pin_missing lines, want one per loss", n)
	}
	p.waitServedLeaf(admin, rotated, 10*time.Second)
	if got, want := p.metric("tether_svid_expiry_timestamp_seconds"), float64(rotated.Certificates[0].NotAfter.Unix()); got != want {
		t.Fatalf("tether_svid_expiry_timestamp_seconds %v, want %v", got, want)
	}
	p.sigterm()
}

// TestUnpinnedSeveralSVIDs: without --spiffe-id, tetherd serves the first
// SVID's ID, warns that the choice is the agent's order, and keeps that ID
// when the order changes.
func TestUnpinnedSeveralSVIDs(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	own, other := ca.Issue(t, ftServerID), ca.Issue(t, opOtherID)
	fw := ftFake(t, ca, own, other)
	admin := ca.Issue(t, ftAdminID)

	p := ftStartEnv(t, opEnv(), "--workload-api", fw.Addr(), "--admin", "spiffe://example.org/admin/*")
	if id := p.serving()["spiffe_id"]; id != ftServerID {
		t.Fatalf("tetherd.started spiffe_id=%v, want %s", id, ftServerID)
	}
	amb := p.Event(t, "identity.ambiguous", 1, time.Second)
	if fix, _ := amb["fix"].(string); amb["level"] != "WARN" || !strings.Contains(fix, "--spiffe-id") {
		t.Fatalf("identity.ambiguous %v", amb)
	}

	rotated := ca.Issue(t, ftServerID)
	must(t, fw.SetSVIDs(ca.Bundle(), other, rotated)) // the other one first now
	p.Event(t, "identity.rotated", 1, 10*time.Second)
	if fp, want := p.servedLeaf(admin), svid.Fingerprint(rotated.Certificates[0]); fp != want {
		t.Fatalf("serving %q, want its own rotated SVID %q", fp, want)
	}
	p.waitReady(http.StatusOK, 10*time.Second)
	p.sigterm()
}

// TestPinnedAbsentAtStart: with --spiffe-id and no SVID with it, tetherd
// gives up after --startup-timeout (exit 1), naming what it was offered.
func TestPinnedAbsentAtStart(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := ftFake(t, ca, ca.Issue(t, opOtherID))
	p := ftStartEnv(t, opEnv(), "--workload-api", fw.Addr(), "--spiffe-id", ftServerID,
		"--startup-timeout", "500ms", "--admin", "spiffe://example.org/admin/*")
	if code := p.Exit(t, 20*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(p.Stderr()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "no SVID for "+ftServerID) || !strings.Contains(last, opOtherID) {
		t.Fatalf("last line %q, want it to name the pinned ID and what was offered", last)
	}
}

// TestPinnedFiles: SVID files of another ID than --spiffe-id exit 2 at
// start; rewritten later with another ID they are refused (the last SVID
// kept), tetherd is not ready until its own identity is back.
func TestPinnedFiles(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	own := ca.Issue(t, ftServerID)
	files := ca.WriteFiles(t, dir, "svid", own)
	id := []string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle, "--admin", "spiffe://example.org/admin/*"}

	var stdout, stderr bytes.Buffer
	code := run(append([]string{"--spiffe-id", opOtherID}, id...), &stdout, &stderr)
	if line := stderr.String(); code != 2 || !strings.Contains(line, "--spiffe-id") || !strings.Contains(line, ftServerID) || strings.Count(line, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming --spiffe-id and the files' ID", code, line)
	}

	p := ftStartEnv(t, opEnv(), append([]string{"--spiffe-id", ftServerID}, id...)...)
	p.serving()
	p.waitReady(http.StatusOK, 10*time.Second)
	ca.WriteFiles(t, dir, "svid", ca.Issue(t, opOtherID))
	p.signal(syscall.SIGHUP)
	if missing := p.Event(t, "identity.pin_missing", 1, 10*time.Second); !reflect.DeepEqual(missing["offered"], []any{opOtherID}) {
		t.Fatalf("identity.pin_missing %v", missing)
	}
	p.waitReady(http.StatusServiceUnavailable, 10*time.Second)
	if fp := p.servedLeaf(ca.Issue(t, ftAdminID)); fp != svid.Fingerprint(own.Certificates[0]) {
		t.Fatalf("serving %q, want the last SVID with the pinned ID", fp)
	}
	if evs := p.Events("identity.reload_failed"); len(evs) != 0 {
		t.Fatalf("identity.reload_failed %v: the loss is said once, as identity.pin_missing", evs)
	}

	ca.WriteFiles(t, dir, "svid", ca.Issue(t, ftServerID))
	p.signal(syscall.SIGHUP)
	p.Event(t, "identity.pin_restored", 1, 10*time.Second)
	p.waitReady(http.StatusOK, 10*time.Second)
	p.sigterm()
}

// TestOwnSVIDExpiryLogged: a Workload API SVID that expires with no new one
// is logged as identity.expired, and the gauge holds its NotAfter.
func TestOwnSVIDExpiryLogged(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	now := time.Now()
	short := ca.Issue(t, ftServerID, testpki.WithValidity(now.Add(-time.Minute), now.Add(3*time.Second)))
	fw := ftFake(t, ca, short)
	p := ftStartEnv(t, opEnv(), "--workload-api", fw.Addr(), "--admin", "spiffe://example.org/admin/*")
	p.serving()
	if got, want := p.metric("tether_svid_expiry_timestamp_seconds"), float64(short.Certificates[0].NotAfter.Unix()); got != want {
		t.Fatalf("tether_svid_expiry_timestamp_seconds %v, want %v", got, want)
	}
	ev := p.Event(t, "identity.expired", 1, 20*time.Second)
	if ev["level"] != "ERROR" || ev["fingerprint"] != svid.Fingerprint(short.Certificates[0]) {
		t.Fatalf("identity.expired %v", ev)
	}
	p.waitReady(http.StatusServiceUnavailable, 10*time.Second)
	p.sigterm()
}

// TestObservability: the build metric, the API's HTTP metrics, an
// http.request line per request at debug level, durations as strings.
func TestObservability(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, ftServerID))
	p := ftStartEnv(t, opEnv(), "--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle,
		"--admin", "spiffe://example.org/admin/*")
	ev := p.serving()
	if ev["session_ttl"] != "8h0m0s" || ev["idle_timeout"] != "15m0s" {
		t.Fatalf("tetherd.started %v: want durations as the flags take them", ev)
	}
	// It names the limits, the session caps and login rate among them.
	if ev["max_sessions"] != 10000.0 || ev["max_sessions_per_identity"] != 16.0 || ev["login_rate"] != 1.0 || ev["login_burst"] != 10.0 {
		t.Fatalf("tetherd.started %v: want the session caps and the login rate", ev)
	}

	p.login(p.apiClient(ca.Issue(t, ftAdminID)))

	req := p.Event(t, "http.request", 1, 10*time.Second)
	if _, isString := req["duration"].(string); req["route"] != "/v1/sessions" || !isString {
		t.Fatalf("http.request %v", req)
	}
	for sample, want := range map[string]float64{
		`tether_build_info{goversion="` + runtime.Version() + `",version="` + cli.Version() + `"}`: 1,
		`tether_http_requests_total{method="POST",route="/v1/sessions",status="201"}`:              1,
	} {
		if got := p.metric(sample); got != want {
			t.Fatalf("%s %v, want %v", sample, got, want)
		}
	}
	if exp := p.metric("tether_svid_expiry_timestamp_seconds"); exp <= float64(time.Now().Unix()) {
		t.Fatalf("tether_svid_expiry_timestamp_seconds %v: not in the future", exp)
	}
	p.sigterm()
}

// TestVersionFlag: --version prints what version prints.
func TestVersionFlag(t *testing.T) {
	var a, b, errs bytes.Buffer
	codeA, codeB := run([]string{"version"}, &a, &errs), run([]string{"--version"}, &b, &errs)
	if codeA != 0 || codeB != 0 || a.String() != b.String() || b.String() != "tetherd "+cli.Version()+"\n" || errs.Len() != 0 {
		t.Fatalf("version: exit %d %q; --version: exit %d %q; stderr %q", codeA, a.String(), codeB, b.String(), errs.String())
	}
}
