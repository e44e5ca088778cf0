package main

// Fault tests of the real tetherd binary (built by TestMain), driven as an
// operator would drive it: the Workload API absent at start, lost and back
// later, rotating the SVID under a running tetherd; SVID files replaced with
// garbage or half-written, and reloaded on SIGHUP; SIGTERM draining an
// in-flight request. The Workload API is internal/fakeworkload. Every wait
// polls an observable (a log event, /readyz, /metrics, the certificate the
// server presents) against a deadline; nothing sleeps on a guess.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"

	"github.com/tetherproject/tether/internal/atomicfile"
	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

const (
	ftServerID = "spiffe://example.org/tetherd"
	ftAdminID  = "spiffe://example.org/admin/alice"
)

// ftProc is a running tetherd (a child process, or `tetherd dev` run
// in-process) and the addresses it serves on.
type ftProc struct {
	*testproc.Process
	t      *testing.T
	api    string // host:port of the API
	health string // host:port of /healthz, /readyz, /metrics
}

// ftStart starts tetherd with args plus free loopback ports and JSON logs.
// It does not wait for it to serve.
func ftStart(t *testing.T, args ...string) *ftProc {
	t.Helper()
	return ftStartEnv(t, nil, args...)
}

// ftStartEnv is ftStart with env as tetherd's whole environment (nil: the
// test's).
func ftStartEnv(t *testing.T, env []string, args ...string) *ftProc {
	t.Helper()
	args = append(args, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug")
	return &ftProc{Process: testproc.StartT(t, testproc.Config{Path: tetherdBinary, Args: args, Env: env}), t: t}
}

// ftInProcess runs tetherd with args plus free loopback ports in the test's
// own process, where a test can reach into it (a manual clock, say); ending
// its context stands in for SIGTERM. It does not wait for it to serve.
func ftInProcess(t *testing.T, args ...string) *ftProc {
	t.Helper()
	args = append(args, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0")
	main := func(ctx context.Context, stdout, stderr io.Writer) int { return runContext(ctx, args, stdout, stderr) }
	return &ftProc{Process: testproc.StartFuncT(t, "tetherd (in-process)", main), t: t}
}

// ftServe starts tetherd and waits until it has logged tetherd.started.
func ftServe(t *testing.T, args ...string) *ftProc {
	t.Helper()
	p := ftStart(t, args...)
	p.serving()
	return p
}

// serving waits until tetherd has logged tetherd.started, takes the
// addresses it logged and returns the event.
func (p *ftProc) serving() testproc.Event {
	p.t.Helper()
	ev := p.Event(p.t, "tetherd.started", 1, 30*time.Second)
	p.api, _ = ev["listen"].(string)
	p.health, _ = ev["health_listen"].(string)
	if p.api == "" || p.health == "" {
		p.t.Fatalf("tetherd.started without addresses: %v", ev)
	}
	return ev
}

// signal sends sig to tetherd.
func (p *ftProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// sigterm stops tetherd with SIGTERM and fails unless it exits 0.
func (p *ftProc) sigterm() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.Exit(p.t, 15*time.Second); code != 0 {
		p.t.Fatalf("exit %d after SIGTERM", code)
	}
}

var ftHTTP = &http.Client{Timeout: 5 * time.Second}

// get is GET url's status and body (0 and the error if it does not answer).
func ftGet(url string) (int, string) {
	resp, err := ftHTTP.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readyz returns /readyz's status and body (0 if it does not answer).
func (p *ftProc) readyz() (int, string) { return ftGet("http://" + p.health + api.PathReadyz) }

// waitReady waits until /readyz answers want, and returns its body.
func (p *ftProc) waitReady(want int, within time.Duration) string {
	p.t.Helper()
	return p.HTTP(p.t, "http://"+p.health+api.PathReadyz, want, within)
}

// metric reads the sample of /metrics named sample (with its labels, as
// exposed): 0 if there is none.
func (p *ftProc) metric(sample string) float64 {
	p.t.Helper()
	status, body := ftGet("http://" + p.health + api.PathMetrics)
	if status != http.StatusOK {
		p.t.Fatalf("/metrics: %d %s", status, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// reloadFailures reads tether_identity_reload_failures_total from /metrics.
func (p *ftProc) reloadFailures() int { return int(p.metric("tether_identity_reload_failures_total")) }

// servedLeaf connects to the API as client and returns the fingerprint of
// the leaf the server presents ("" if the handshake fails). It does not
// check the server's certificate: it observes which one is served, expired
// ones included.
func (p *ftProc) servedLeaf(client *x509svid.SVID) string {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{testpki.TLSCertificate(client)},
		InsecureSkipVerify: true, //nolint:gosec // G402: observes which certificate tetherd serves, expired ones included; nothing is sent
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", p.api, cfg)
	if err != nil {
		return ""
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return svid.Fingerprint(certs[0])
}

func (p *ftProc) waitServedLeaf(client, want *x509svid.SVID, within time.Duration) {
	p.t.Helper()
	fp := svid.Fingerprint(want.Certificates[0])
	testutil.WaitFor(p.t, within, "tetherd to serve leaf "+fp, func() bool { return p.servedLeaf(client) == fp })
}

// apiClient is an mTLS client of the API presenting s (it does not check
// the server, whose SVID may be expired on purpose).
func (p *ftProc) apiClient(s *x509svid.SVID) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{testpki.TLSCertificate(s)},
		InsecureSkipVerify: true, //nolint:gosec // G402: the server's SVID is the subject of these tests, not the client's check
	}}
	p.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (p *ftProc) call(c *http.Client, method, path, token string) (int, []byte) {
	p.t.Helper()
	return p.callBody(c, method, path, token, nil)
}

// callBody is call with a request body (nil: none).
func (p *ftProc) callBody(c *http.Client, method, path, token string, body io.Reader) (int, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, "https://"+p.api+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *ftProc) login(c *http.Client) string {
	p.t.Helper()
	status, body := p.call(c, http.MethodPost, api.PathSessions, "")
	if status != http.StatusCreated {
		p.t.Fatalf("login: %d %s", status, body)
	}
	var lr api.LoginResponse
	if err := json.Unmarshal(body, &lr); err != nil {
		p.t.Fatal(err)
	}
	return lr.Token
}

// ftFake starts a fake Workload API until the test ends, handing out svids
// (in this order) with ca's bundle, or nothing yet if there are none.
func ftFake(t *testing.T, ca *testpki.CA, svids ...*x509svid.SVID) *fakeworkload.Server {
	t.Helper()
	fw := fakeworkload.New(ftSocket(t))
	if len(svids) > 0 {
		if err := fw.SetSVIDs(ca.Bundle(), svids...); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.Stop)
	return fw
}

// ftSocket returns a short unix socket path (they are limited to ~107 bytes).
func ftSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tfw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "api.sock")
}

// TestFaultWorkloadAPIAbsentAtStart: with no Workload API (no socket), or one
// that issues this process no identity, tetherd exits non-zero within its
// --startup-timeout with one clear line naming the address.
func TestFaultWorkloadAPIAbsentAtStart(t *testing.T) {
	denying := ftFake(t, nil)
	denying.SetError(codes.PermissionDenied, "no identity issued")

	for name, addr := range map[string]string{
		"fail/no-socket":           "unix://" + ftSocket(t),
		"fail/permission-denied":   denying.Addr(),
		"fail/nothing-on-tcp-port": "tcp://127.0.0.1:1",
	} {
		t.Run(name, func(t *testing.T) {
			const timeout = 1500 * time.Millisecond
			start := time.Now()
			p := ftStart(t, "--workload-api", addr, "--startup-timeout", timeout.String(), "--admin", ftAdminID)
			code := p.Exit(t, timeout+10*time.Second)
			took := time.Since(start)
			if code == 0 {
				t.Fatal("exit 0 without an identity")
			}
			if took < timeout {
				t.Fatalf("gave up after %s, before the %s startup timeout", took, timeout)
			}
			var last string
			for _, line := range strings.Split(strings.TrimSpace(p.Stderr()), "\n") {
				last = line
			}
			want := "no X.509 SVID from the Workload API at " + addr
			if !strings.HasPrefix(last, "tetherd: ") || !strings.Contains(last, want) {
				t.Fatalf("last line %q, want one clear line containing %q", last, want)
			}
			t.Logf("exit %d after %s: %s", code, took.Round(time.Millisecond), last)
		})
	}
}

// ftWorkload starts a fake Workload API handing out first, and tetherd on
// it; it returns once tetherd is ready and serves first.
func ftWorkload(t *testing.T, ca *testpki.CA, first, client *x509svid.SVID) (*fakeworkload.Server, *ftProc) {
	t.Helper()
	fw := ftFake(t, ca, first)
	p := ftServe(t, "--workload-api", fw.Addr(), "--startup-timeout", "10s", "--admin", "spiffe://example.org/admin/*")
	p.waitReady(http.StatusOK, 10*time.Second)
	p.waitServedLeaf(client, first, 10*time.Second)
	return fw, p
}

// TestFaultWorkloadAPIRotation: when the Workload API pushes a new SVID,
// tetherd serves it on new connections without a restart, and sessions live
// on across the rotation.
func TestFaultWorkloadAPIRotation(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	alice := ca.Issue(t, ftAdminID)
	fw, p := ftWorkload(t, ca, ca.Issue(t, ftServerID), alice)
	pid := p.PID()
	c := p.apiClient(alice)
	tok := p.login(c)

	for i := range 3 {
		next := ca.Issue(t, ftServerID)
		if err := fw.SetSVID(next, ca.Bundle()); err != nil {
			t.Fatal(err)
		}
		p.waitServedLeaf(alice, next, 10*time.Second)
		c.CloseIdleConnections()
		if status, body := p.call(c, http.MethodGet, api.PathSessionsSelf, tok); status != http.StatusOK {
			t.Fatalf("session after rotation %d: %d %s", i+1, status, body)
		}
	}
	if p.Exited() || p.PID() != pid {
		t.Fatal("tetherd restarted")
	}
	if n := fw.Fetches(); n != 1 {
		t.Fatalf("%d Workload API streams; the rotations should arrive on the first one", n)
	}
	p.sigterm()
}

// TestFaultWorkloadAPILossAndReturn: when the Workload API goes away tetherd
// keeps serving on its current SVID; /readyz turns 503 when that SVID
// expires and says so; all recovers, sessions included, when the Workload
// API returns.
func TestFaultWorkloadAPILossAndReturn(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for an SVID to expire and for go-spiffe to reconnect")
	}
	ca := testpki.NewCA(t, "example.org")
	alice := ca.Issue(t, ftAdminID)
	fw, p := ftWorkload(t, ca, ca.Issue(t, ftServerID), alice)
	c := p.apiClient(alice)
	tok := p.login(c)

	// An SVID about to expire, then the Workload API goes away.
	const lifetime = 4 * time.Second
	now := time.Now()
	short := ca.Issue(t, ftServerID, testpki.WithValidity(now.Add(-time.Minute), now.Add(lifetime)))
	if err := fw.SetSVID(short, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	p.waitServedLeaf(alice, short, lifetime)
	fw.Stop()

	// Still serving on the current SVID while it is valid. The answers mean
	// something only if they came before it expired: on a machine so slow
	// that they did not, the subtest says so and skips.
	t.Run("serves-until-expiry", func(t *testing.T) {
		expiry := short.Certificates[0].NotAfter
		status, body := p.readyz()
		fp := p.servedLeaf(alice)
		if late := time.Since(expiry); late >= 0 {
			t.Skipf("the checks ended %s after the short SVID expired: too late to tell whether tetherd served on it", late)
		}
		if status != http.StatusOK {
			t.Fatalf("/readyz %d (%s) while the current SVID is still valid", status, body)
		}
		if fp != svid.Fingerprint(short.Certificates[0]) {
			t.Fatalf("serving leaf %q after the loss, want the current SVID", fp)
		}
	})
	// Expired: /readyz says so; the process is alive.
	body := p.waitReady(http.StatusServiceUnavailable, lifetime+10*time.Second)
	if !strings.Contains(body, "expired") {
		t.Fatalf("/readyz 503 says %q, want the SVID's expiry", body)
	}
	if status, _ := ftGet("http://" + p.health + api.PathHealthz); status != http.StatusOK {
		t.Fatalf("/healthz %d: the process is alive and should say so", status)
	}

	// The Workload API returns with a fresh SVID: ready again, no restart.
	back := ca.Issue(t, ftServerID)
	if err := fw.SetSVID(back, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitReady(http.StatusOK, 45*time.Second) // go-spiffe retries with a linear backoff
	p.waitServedLeaf(alice, back, 10*time.Second)
	c.CloseIdleConnections()
	if status, body := p.call(c, http.MethodGet, api.PathSessionsSelf, tok); status != http.StatusOK {
		t.Fatalf("session after the Workload API returned: %d %s", status, body)
	}
	if p.Exited() {
		t.Fatal("tetherd exited")
	}
	p.sigterm()
}

// ftReplace writes data to path atomically (a temporary file, then a rename),
// so that each step of a test is exactly one change of the files.
func ftReplace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFaultSVIDFiles: garbage, half-written or expired SVID files never
// replace the last good identity; each bad change is logged and counted in
// tether_identity_reload_failures_total; a good change is taken without a
// restart; SIGHUP reloads (even a bad state the poll will not retry).
func TestFaultSVIDFiles(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	first := ca.Issue(t, ftServerID)
	files := ca.WriteFiles(t, dir, "tetherd", first)
	p := ftServe(t, "--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle,
		"--admin", "spiffe://example.org/admin/*")
	p.waitReady(http.StatusOK, 10*time.Second)
	alice := ca.Issue(t, ftAdminID)
	p.waitServedLeaf(alice, first, 5*time.Second)
	c := p.apiClient(alice)
	tok := p.login(c)
	if n := p.reloadFailures(); n != 0 {
		t.Fatalf("%d reload failures at start", n)
	}

	stillFirst := func(step string) {
		t.Helper()
		if fp := p.servedLeaf(alice); fp != svid.Fingerprint(first.Certificates[0]) {
			t.Fatalf("%s: serving %q, want the last good SVID", step, fp)
		}
		if status, body := p.readyz(); status != http.StatusOK {
			t.Fatalf("%s: /readyz %d %s", step, status, body)
		}
		c.CloseIdleConnections()
		if status, body := p.call(c, http.MethodGet, api.PathSessionsSelf, tok); status != http.StatusOK {
			t.Fatalf("%s: session refused %d %s", step, status, body)
		}
	}

	certPEM, err := os.ReadFile(files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("this is not a PEM file\n")},
		{"half-written", certPEM[:len(certPEM)/2]},
		{"empty", nil},
	}
	for i, step := range steps {
		ftReplace(t, files.Cert, step.data)
		ev := p.Event(t, "identity.reload_failed", i+1, 10*time.Second)
		if msg, _ := ev["error"].(string); !strings.Contains(msg, files.Cert) {
			t.Fatalf("%s: reload_failed does not name the file: %v", step.name, ev)
		}
		testutil.WaitFor(t, 5*time.Second, "the failure counted", func() bool { return p.reloadFailures() == i+1 })
		stillFirst(step.name)
	}

	// SIGHUP retries the current (bad) files at once, although the poll
	// does not try a state it already refused: one more failure, counted.
	p.signal(syscall.SIGHUP)
	p.Event(t, "identity.reload_requested", 1, 5*time.Second)
	p.Event(t, "identity.reload_failed", len(steps)+1, 5*time.Second)
	testutil.WaitFor(t, 5*time.Second, "the SIGHUP failure counted", func() bool { return p.reloadFailures() == len(steps)+1 })
	stillFirst("sighup-bad")

	// A good new SVID (key first, then certificate; spiffe-helper's order
	// does not matter for the outcome) is taken without a restart, on
	// SIGHUP or the poll, whichever comes first.
	second := ca.Issue(t, ftServerID)
	certPEM2, keyPEM2, err := second.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ftReplace(t, files.Key, keyPEM2)
	ftReplace(t, files.Cert, certPEM2)
	p.signal(syscall.SIGHUP)
	p.waitServedLeaf(alice, second, 10*time.Second)
	p.Event(t, "identity.reloaded", 1, 5*time.Second)
	if status, body := p.readyz(); status != http.StatusOK {
		t.Fatalf("/readyz %d %s after a good reload", status, body)
	}
	c.CloseIdleConnections()
	if status, body := p.call(c, http.MethodGet, api.PathSessionsSelf, tok); status != http.StatusOK {
		t.Fatalf("session after the reload: %d %s", status, body)
	}

	// An SVID that has already expired is refused like garbage: the one
	// just taken stays.
	failuresBefore := p.reloadFailures()
	now := time.Now()
	expired := ca.Issue(t, ftServerID, testpki.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour)))
	certPEM3, keyPEM3, err := expired.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ftReplace(t, files.Key, keyPEM3)
	ftReplace(t, files.Cert, certPEM3)
	testutil.WaitFor(t, 10*time.Second, "the expired SVID refused", func() bool {
		for _, ev := range p.Events("identity.reload_failed") {
			if msg, _ := ev["error"].(string); strings.Contains(msg, "expired") {
				return true
			}
		}
		return false
	})
	if n := p.reloadFailures(); n <= failuresBefore {
		t.Fatalf("reload failures %d, want more than %d", n, failuresBefore)
	}
	if fp := p.servedLeaf(alice); fp != svid.Fingerprint(second.Certificates[0]) {
		t.Fatalf("serving %q after an expired SVID was written, want the last good one", fp)
	}
	if status, body := p.readyz(); status != http.StatusOK {
		t.Fatalf("/readyz %d %s after an expired SVID was written", status, body)
	}

	if strings.Contains(p.Stderr(), tok[:16]) {
		t.Fatal("a token is in the log")
	}

	p.sigterm()
}

// TestFaultSIGTERMDrains: SIGTERM stops accepting connections at once, lets
// a request that is in flight finish with its answer, and exits 0; a request
// that does not finish is cut at --shutdown-timeout, with a warning, and
// tetherd still exits 0.
func TestFaultSIGTERMDrains(t *testing.T) {
	dir := t.TempDir()
	p := ftServe(t, "dev", "--dir", dir, "--shutdown-timeout", "20s")
	p.waitReady(http.StatusOK, 10*time.Second)

	// The dev mode's non-admin is its introspector. It starts a request
	// whose body it holds back; "Expect: 100-continue" makes the server
	// say when the handler begins to read the body: in flight.
	conn := ftInFlight(t, p, dir)
	defer conn.Close()
	br := bufio.NewReader(conn)

	p.signal(syscall.SIGTERM)
	p.Event(t, "tetherd.stopping", 1, 10*time.Second)
	testutil.WaitFor(t, 10*time.Second, "the API listener to close", func() bool {
		c, err := net.DialTimeout("tcp", p.api, time.Second)
		if err != nil {
			return true
		}
		_ = c.Close()
		return false
	})
	if p.Exited() {
		t.Fatal("tetherd exited with a request in flight")
	}

	// Finish the request: it is answered, then tetherd exits 0.
	if _, err := io.WriteString(conn, `"x","cnf":{"x5t#S256":"y"}}`); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != `{"active":false}` {
		t.Fatalf("in-flight request answered %d %s", resp.StatusCode, b)
	}
	if code := p.Exit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after draining", code)
	}
	p.Event(t, "tetherd.stopped", 1, time.Second)

	t.Run("bounded", func(t *testing.T) {
		dir := t.TempDir()
		p := ftServe(t, "dev", "--dir", dir, "--shutdown-timeout", "1s")
		p.waitReady(http.StatusOK, 10*time.Second)
		conn := ftInFlight(t, p, dir) // never finished
		defer conn.Close()
		start := time.Now()
		p.signal(syscall.SIGTERM)
		code := p.Exit(t, 10*time.Second)
		if took := time.Since(start); took > 6*time.Second {
			t.Fatalf("took %s to exit with a 1s shutdown timeout", took)
		}
		// The bound reached is the bound working (CONTRACT: exit 0): the
		// request left is cut, with one warning saying so.
		if code != 0 {
			t.Fatalf("exit %d after a drain cut at --shutdown-timeout, want 0; stderr: %s", code, p.Stderr())
		}
		if strings.Contains(p.Stderr(), "draining the API") {
			t.Fatalf("the cut drain is reported as a failure: %s", p.Stderr())
		}
		if evs := p.Events("tetherd.drain_timeout"); len(evs) != 1 || evs[0]["level"] != "WARN" ||
			evs[0]["connections_cut"] != float64(1) || evs[0]["shutdown_timeout"] != "1s" {
			t.Fatalf("tetherd.drain_timeout %v, want one warning naming the one connection cut", evs)
		}
		p.Event(t, "tetherd.stopped", 1, time.Second)
	})
}

// ftInFlight opens a TLS connection as dev mode's introspector and starts a
// POST /v1/introspect whose body it holds back, returning once the handler
// is reading the body (the server sent 100 Continue).
func ftInFlight(t *testing.T, p *ftProc, dir string) *tls.Conn {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "user.pem"), filepath.Join(dir, "user.key"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", p.api, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, //nolint:gosec // G402: the test drives tetherd's shutdown, not the client's check
	})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"token":"x","cnf":{"x5t#S256":"y"}}`
	_, err = io.WriteString(conn, "POST /v1/introspect HTTP/1.1\r\nHost: tetherd\r\nContent-Type: application/json\r\n"+
		"Expect: 100-continue\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+`{"token":`)
	if err != nil {
		t.Fatal(err)
	}
	// Read exactly the interim answer: its status line and the empty line.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
		t.Fatalf("no 100 Continue: %q %v", status, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("100 Continue not followed by an empty line: %q %v", blank, err)
	}
	if br.Buffered() != 0 {
		t.Fatal("unexpected bytes after 100 Continue")
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}
