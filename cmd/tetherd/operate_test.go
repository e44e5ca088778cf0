package main

// Operating tetherd, tested on the real binary: the identity it serves as
// (--spiffe-id among several SVIDs, and never another), what it logs about
// its own SVID, its build and SVID-expiry metrics, --version. The Workload
// API is internal/fakeworkload; every wait is for an event, an answer or an
// exit, with a deadline.

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/svid"
)

const (
	opServerID = "spiffe://example.org/tetherd"
	opOtherID  = "spiffe://example.org/billing" // another entry of the same workload
	opAdminID  = "spiffe://example.org/admin/alice"
)

// opProc is a tetherd child process and where it serves.
type opProc struct {
	*testproc.Process
	t           *testing.T
	api, health string
}

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

// opStart starts the tetherd binary with args, free loopback ports, JSON
// logs at debug level, and env as its whole environment.
func opStart(t *testing.T, env []string, args ...string) *opProc {
	t.Helper()
	args = append(args, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--log-level", "debug", "--log-format", "json")
	return &opProc{Process: testproc.StartT(t, testproc.Config{Path: tetherdBinary, Args: args, Env: env}), t: t}
}

// started waits for tetherd.started and takes the addresses it logged.
func (p *opProc) started() testproc.Event {
	p.t.Helper()
	ev := p.Event(p.t, "tetherd.started", 1, 30*time.Second)
	p.api, _ = ev["listen"].(string)
	p.health, _ = ev["health_listen"].(string)
	require.NotEmpty(p.t, p.api)
	return ev
}

func (p *opProc) url(path string) string { return "http://" + p.health + path }

// metrics is the text of /metrics.
func (p *opProc) metrics() string {
	p.t.Helper()
	return p.HTTP(p.t, p.url("/metrics"), http.StatusOK, 10*time.Second)
}

// sample is the value of the line of /metrics that begins with prefix.
func sample(t *testing.T, metrics, prefix string) float64 {
	t.Helper()
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, prefix) {
			f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err, line)
			return f
		}
	}
	t.Fatalf("no sample %s in /metrics", prefix)
	return 0
}

// servedLeaf is the leaf tetherd presents at a handshake, as client: nil
// if the handshake fails. Nothing is sent.
func (p *opProc) servedLeaf(client *x509svid.SVID) []byte {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{testpki.TLSCertificate(client)},
		InsecureSkipVerify: true, //nolint:gosec // G402: observes which certificate tetherd serves
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.api, cfg)
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// stop sends SIGTERM and requires exit 0.
func (p *opProc) stop() {
	p.t.Helper()
	require.NoError(p.t, p.Signal(syscall.SIGTERM))
	require.Equal(p.t, 0, p.Exit(p.t, 20*time.Second), p.Report())
}

// opFake starts a fake Workload API on a short socket path.
func opFake(t *testing.T) *fakeworkload.Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "op") // unix socket paths are short
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fw := fakeworkload.New(filepath.Join(dir, "api.sock"))
	require.NoError(t, fw.Start())
	t.Cleanup(fw.Stop)
	return fw
}

// TestPinnedAmongSeveralSVIDs: the workload gets two SVIDs, tetherd's own
// second. With --spiffe-id it serves that one; when the agent stops handing
// it out, tetherd says so once, is not ready, and goes on presenting the
// last SVID with its ID, never the other; when it is back (rotated), it is
// ready again and logs the rotation.
func TestPinnedAmongSeveralSVIDs(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := opFake(t)
	other, own := ca.Issue(t, opOtherID), ca.Issue(t, opServerID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), other, own))
	admin := ca.Issue(t, opAdminID)

	p := opStart(t, opEnv("TETHERD_SPIFFE_ID="+opServerID), "--workload-api", fw.Addr(), "--admin", "spiffe://example.org/admin/*")
	ev := p.started()
	assert.Equal(t, opServerID, ev["spiffe_id"])
	p.HTTP(t, p.url("/readyz"), http.StatusOK, 10*time.Second)
	assert.Equal(t, own.Certificates[0].Raw, p.servedLeaf(admin))
	assert.Empty(t, p.Events("identity.ambiguous"), "pinned: nothing ambiguous")
	conf := p.Event(t, "tetherd.config", 1, time.Second)
	assert.Equal(t, map[string]any{"value": opServerID, "from": "env"}, conf["settings"].(map[string]any)["spiffe_id"])

	// The agent no longer hands out tetherd's SVID.
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), other))
	body := p.HTTP(t, p.url("/readyz"), http.StatusServiceUnavailable, 10*time.Second)
	assert.Contains(t, body, opServerID)
	assert.Contains(t, body, opOtherID)
	missing := p.Event(t, "identity.pin_missing", 1, 10*time.Second)
	assert.Equal(t, "ERROR", missing["level"])
	assert.Equal(t, opServerID, missing["spiffe_id"])
	assert.Equal(t, []any{opOtherID}, missing["offered"])
	assert.Equal(t, own.Certificates[0].Raw, p.servedLeaf(admin), "the last SVID with the pinned ID, never the other")

	// Back, rotated.
	rotated := ca.Issue(t, opServerID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), other, rotated))
	p.HTTP(t, p.url("/readyz"), http.StatusOK, 10*time.Second)
	p.Event(t, "identity.pin_restored", 1, 10*time.Second)
	rot := p.Event(t, "identity.rotated", 1, 10*time.Second)
	assert.Equal(t, svid.Fingerprint(rotated.Certificates[0]), rot["fingerprint"])
	assert.Equal(t, svid.Fingerprint(own.Certificates[0]), rot["previous_fingerprint"])
	assert.Len(t, p.Events("identity.pin_missing"), 1, "one line per loss")
	testutil.WaitFor(t, 10*time.Second, "the rotated leaf to be served", func() bool {
		return bytes.Equal(p.servedLeaf(admin), rotated.Certificates[0].Raw)
	})
	assert.InDelta(t, float64(rotated.Certificates[0].NotAfter.Unix()),
		sample(t, p.metrics(), "tether_svid_expiry_timestamp_seconds "), 0)
	p.stop()
}

// TestUnpinnedSeveralSVIDs: without --spiffe-id, tetherd serves the first
// SVID's ID, warns that the choice is the agent's order, and keeps that ID
// when the order changes.
func TestUnpinnedSeveralSVIDs(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := opFake(t)
	own, other := ca.Issue(t, opServerID), ca.Issue(t, opOtherID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), own, other))
	admin := ca.Issue(t, opAdminID)

	p := opStart(t, opEnv(), "--workload-api", fw.Addr(), "--admin", "spiffe://example.org/admin/*")
	assert.Equal(t, opServerID, p.started()["spiffe_id"])
	amb := p.Event(t, "identity.ambiguous", 1, time.Second)
	assert.Equal(t, "WARN", amb["level"])
	assert.Contains(t, amb["fix"], "--spiffe-id")

	rotated := ca.Issue(t, opServerID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), other, rotated)) // the other one first now
	p.Event(t, "identity.rotated", 1, 10*time.Second)
	assert.Equal(t, rotated.Certificates[0].Raw, p.servedLeaf(admin))
	p.HTTP(t, p.url("/readyz"), http.StatusOK, 10*time.Second)
	p.stop()
}

// TestPinnedAbsentAtStart: with --spiffe-id and no SVID with it, tetherd
// gives up after --startup-timeout (exit 1), naming what it was offered.
func TestPinnedAbsentAtStart(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := opFake(t)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), ca.Issue(t, opOtherID)))
	p := opStart(t, opEnv(), "--workload-api", fw.Addr(), "--spiffe-id", opServerID,
		"--startup-timeout", "500ms", "--admin", "spiffe://example.org/admin/*")
	require.Equal(t, 1, p.Exit(t, 20*time.Second))
	lines := strings.Split(strings.TrimSpace(p.Stderr()), "\n")
	last := lines[len(lines)-1]
	assert.Contains(t, last, "no SVID for "+opServerID)
	assert.Contains(t, last, opOtherID)
}

// TestPinnedFiles: SVID files of another ID than --spiffe-id exit 2 at
// start; rewritten later with another ID they are refused (the last SVID
// kept), tetherd is not ready until its own identity is back.
func TestPinnedFiles(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	own := ca.Issue(t, opServerID)
	files := ca.WriteFiles(t, dir, "svid", own)
	id := []string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle, "--admin", "spiffe://example.org/admin/*"}

	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run(append([]string{"--spiffe-id", opOtherID}, id...), &stdout, &stderr))
	assert.Contains(t, stderr.String(), "--spiffe-id")
	assert.Contains(t, stderr.String(), opServerID)
	assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), stderr.String())

	p := opStart(t, opEnv(), append([]string{"--spiffe-id", opServerID}, id...)...)
	p.started()
	p.HTTP(t, p.url("/readyz"), http.StatusOK, 10*time.Second)
	ca.WriteFiles(t, dir, "svid", ca.Issue(t, opOtherID))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	missing := p.Event(t, "identity.pin_missing", 1, 10*time.Second)
	assert.Equal(t, []any{opOtherID}, missing["offered"])
	p.HTTP(t, p.url("/readyz"), http.StatusServiceUnavailable, 10*time.Second)
	assert.Equal(t, own.Certificates[0].Raw, p.servedLeaf(ca.Issue(t, opAdminID)))
	assert.Empty(t, p.Events("identity.reload_failed"), "said once, as identity.pin_missing")

	ca.WriteFiles(t, dir, "svid", ca.Issue(t, opServerID))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	p.Event(t, "identity.pin_restored", 1, 10*time.Second)
	p.HTTP(t, p.url("/readyz"), http.StatusOK, 10*time.Second)
	p.stop()
}

// TestOwnSVIDExpiryLogged: a Workload API SVID that expires with no new one
// is logged as identity.expired, and the gauge holds its NotAfter.
func TestOwnSVIDExpiryLogged(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := opFake(t)
	now := time.Now()
	short := ca.Issue(t, opServerID, testpki.WithValidity(now.Add(-time.Minute), now.Add(3*time.Second)))
	require.NoError(t, fw.SetSVID(short, ca.Bundle()))
	p := opStart(t, opEnv(), "--workload-api", fw.Addr(), "--admin", "spiffe://example.org/admin/*")
	p.started()
	assert.InDelta(t, float64(short.Certificates[0].NotAfter.Unix()),
		sample(t, p.metrics(), "tether_svid_expiry_timestamp_seconds "), 0)
	ev := p.Event(t, "identity.expired", 1, 20*time.Second)
	assert.Equal(t, "ERROR", ev["level"])
	assert.Equal(t, svid.Fingerprint(short.Certificates[0]), ev["fingerprint"])
	p.HTTP(t, p.url("/readyz"), http.StatusServiceUnavailable, 10*time.Second)
	p.stop()
}

// TestObservability: the build metric, the API's HTTP metrics, an
// http.request line per request at debug level, durations as strings.
func TestObservability(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, opServerID))
	p := opStart(t, opEnv(), "--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle,
		"--admin", "spiffe://example.org/admin/*")
	ev := p.started()
	assert.Equal(t, "8h0m0s", ev["session_ttl"])
	assert.Equal(t, "15m0s", ev["idle_timeout"])

	admin := ca.Issue(t, opAdminID)
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{testpki.TLSCertificate(admin)},
		InsecureSkipVerify: true, //nolint:gosec // G402: the client's view of the server is not what is tested
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post("https://"+p.api+"/v1/sessions", "application/json", nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	req := p.Event(t, "http.request", 1, 10*time.Second)
	assert.Equal(t, "/v1/sessions", req["route"])
	assert.IsType(t, "", req["duration"])

	m := p.metrics()
	assert.Equal(t, 1.0, sample(t, m, `tether_build_info{goversion="`+runtime.Version()+`",version="`+cli.Version()+`"} `))
	assert.Equal(t, 1.0, sample(t, m, `tether_http_requests_total{method="POST",route="/v1/sessions",status="201"} `))
	assert.Greater(t, sample(t, m, "tether_svid_expiry_timestamp_seconds "), float64(time.Now().Unix()))
	p.stop()
}

// TestVersionFlag: --version prints what version prints.
func TestVersionFlag(t *testing.T) {
	var a, b, errs bytes.Buffer
	require.Equal(t, 0, run([]string{"version"}, &a, &errs))
	require.Equal(t, 0, run([]string{"--version"}, &b, &errs))
	assert.Equal(t, a.String(), b.String())
	assert.Equal(t, "tetherd "+cli.Version()+"\n", b.String())
	assert.Empty(t, errs.String())
}
