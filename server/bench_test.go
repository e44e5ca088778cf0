package server

// End-to-end benchmarks of issue 5 over real mTLS (TLS 1.3) on a loopback
// listener, each against a baseline: the same http.Server, TLS configuration
// and client, serving a trivial handler that checks no session. bench/run
// runs them and writes BENCHMARKS.md; keep the names.

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// benchEnv is a trust domain with tetherd's SVID and an admin's.
type benchEnv struct {
	bundle   *x509bundle.Bundle
	serverID spiffeid.ID
	server   *x509svid.SVID
	admin    *x509svid.SVID
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ca := testpki.NewCA(b, "example.org")
	e := &benchEnv{
		bundle:   ca.Bundle(),
		serverID: spiffeid.RequireFromString("spiffe://example.org/tetherd"),
		admin:    ca.Issue(b, "spiffe://example.org/admin/alice"),
	}
	e.server = ca.Issue(b, e.serverID.String())
	return e
}

// serve runs h behind NewHTTPServer, ServerTLSConfig and the connection
// Listener (as tetherd does) on a loopback port and returns the API's base
// URL.
func (e *benchEnv) serve(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tlsCfg := auth.ServerTLSConfig(e.server, e.bundle)
	srv := NewHTTPServer(h, tlsCfg, nil)
	go func() { _ = srv.Serve(NewListener(ln, tlsCfg, ConnLimits{}, nil, nil)) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

// client is an admin's mTLS client, verifying the server as tetherd's SPIFFE
// ID. keepAlive false makes every request open a new connection with a full
// handshake (no session tickets: the client keeps no session cache).
func (e *benchEnv) client(keepAlive bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   tlsconfig.MTLSClientConfig(e.admin, e.bundle, tlsconfig.AuthorizeID(e.serverID)),
		DisableKeepAlives: !keepAlive,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (e *benchEnv) manager(b *testing.B, cfg session.Config) *session.Manager {
	b.Helper()
	cfg.Issuer = e.serverID
	m, err := session.NewManager(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	return m
}

func (e *benchEnv) api(b *testing.B, m *session.Manager) http.Handler {
	b.Helper()
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	if err != nil {
		b.Fatal(err)
	}
	return NewHandler(Config{Sessions: m, Bundles: e.bundle, Admins: admins})
}

// cpuTime is the CPU time (user and system) this process has used so far:
// client, server and runtime together.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times and reports, next to the wall-clock ns/op, the
// process's CPU time per op (cpu-ns/op): on a machine shared with other
// work, the CPU an op costs varies much less than the time it takes.
func loop(b *testing.B, op func()) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	n := 0
	for b.Loop() {
		op()
		n++
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(n), "cpu-ns/op")
}

// trivial is the baseline handler: no peer or session check, a short JSON
// answer.
func trivial(status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
}

// do sends one request and reads the whole answer, which must have status
// want.
func do(b *testing.B, c *http.Client, method, url, token string, want int) []byte {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, body)
	}
	return body
}

func login(b *testing.B, c *http.Client, base string) api.LoginResponse {
	var lr api.LoginResponse
	if err := json.Unmarshal(do(b, c, http.MethodPost, base+api.PathSessions, "", http.StatusCreated), &lr); err != nil {
		b.Fatal(err)
	}
	return lr
}

// BenchmarkRequestWithSession is GET /v1/sessions/self over a kept-alive mTLS
// connection: peer check, bearer token, session validation and the JSON
// answer, end to end.
func BenchmarkRequestWithSession(b *testing.B) {
	e := newBenchEnv(b)
	base := e.serve(b, e.api(b, e.manager(b, session.Config{})))
	c := e.client(true)
	tok := login(b, c, base).Token
	url := base + api.PathSessionsSelf
	do(b, c, http.MethodGet, url, tok, http.StatusOK) // the connection is open
	loop(b, func() { do(b, c, http.MethodGet, url, tok, http.StatusOK) })
}

// BenchmarkRequestBaseline is BenchmarkRequestWithSession's request served
// by the trivial handler on the same server and TLS configuration.
func BenchmarkRequestBaseline(b *testing.B) {
	e := newBenchEnv(b)
	base := e.serve(b, trivial(http.StatusOK))
	c := e.client(true)
	url := base + api.PathSessionsSelf
	do(b, c, http.MethodGet, url, "", http.StatusOK)
	loop(b, func() { do(b, c, http.MethodGet, url, "", http.StatusOK) })
}

// BenchmarkRequestTokenBaseline is BenchmarkRequestBaseline with the
// session's bearer token in the request, which the trivial handler ignores:
// next to BenchmarkRequestBaseline it is the cost of carrying the token, next
// to BenchmarkRequestWithSession the cost of checking it and answering.
func BenchmarkRequestTokenBaseline(b *testing.B) {
	e := newBenchEnv(b)
	c := e.client(true)
	tok := login(b, c, e.serve(b, e.api(b, e.manager(b, session.Config{})))).Token
	url := e.serve(b, trivial(http.StatusOK)) + api.PathSessionsSelf
	do(b, c, http.MethodGet, url, tok, http.StatusOK)
	loop(b, func() { do(b, c, http.MethodGet, url, tok, http.StatusOK) })
}

// BenchmarkLogin is a fresh TLS 1.3 handshake plus POST /v1/sessions. The
// login rate limit is off and the caps are out of reach; each session is
// revoked in-process after its login (a few microseconds) so the store stays
// small.
func BenchmarkLogin(b *testing.B) {
	e := newBenchEnv(b)
	m := e.manager(b, session.Config{LoginRate: rate.Inf, MaxSessions: 1 << 30, MaxSessionsPerIdentity: 1 << 30})
	base := e.serve(b, e.api(b, m))
	c := e.client(false)
	ctx := context.Background()
	loop(b, func() {
		lr := login(b, c, base)
		if err := m.Revoke(ctx, lr.Session.SessionID); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkHandshakeBaseline is a fresh TLS 1.3 handshake plus a POST to the
// trivial handler on the same server and TLS configuration.
func BenchmarkHandshakeBaseline(b *testing.B) {
	e := newBenchEnv(b)
	base := e.serve(b, trivial(http.StatusCreated))
	c := e.client(false)
	url := base + api.PathSessions
	loop(b, func() { do(b, c, http.MethodPost, url, "", http.StatusCreated) })
}
