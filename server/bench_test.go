package server_test

// End-to-end benchmarks of issue 5 over real mTLS (TLS 1.3) on a loopback
// listener, each against a baseline: the same http.Server, TLS configuration
// and client, serving a handler that checks nothing and answers what tetherd
// answers (canned). They run on the package's env, quiet (no logger) and on
// the real clock. bench/run runs them and writes BENCHMARKS.md; keep the
// names.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/render"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// benchEnv is the package's env as the benchmarks measure it, serving what
// o.serve says (the API if nil), and an admin's SVID.
func benchEnv(b *testing.B, o envOpts) (*env, *x509svid.SVID) {
	b.Helper()
	o.quiet, o.now = true, time.Now
	e := newEnv(b, o)
	return e, e.ca.Issue(b, aliceID)
}

// client is the admin's mTLS client. keepAlive false makes every request
// open a new connection with a full handshake (no session tickets: the
// client keeps no session cache).
func client(e *env, admin *x509svid.SVID, keepAlive bool) *http.Client {
	c := e.client(admin, 0)
	c.Transport.(*http.Transport).DisableKeepAlives = !keepAlive
	return c
}

// cpuTime is the CPU time (user and system) this process has used so far:
// client, server and runtime together.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
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

// canned is the baseline handler: no peer or session check, and an answer
// made once: body with the status and the headers of tetherd's JSON answers
// (render.Encoded). It is the HTTP work of tetherd's answer without any of
// tetherd's own, as bench/e2e's baseline server does; before, it answered
// {"ok":true}, which made the client's reading of tetherd's longer answer
// count as the session's cost.
func canned(status int, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		render.Encoded(w, status, body)
	})
}

// answers are the bodies of tetherd's answers to an admin's login and to
// her GET /v1/sessions/self, as its API serves them (on an env of their
// own): what the canned baselines answer, byte for byte in length.
func answers(b *testing.B) (login, self []byte) {
	b.Helper()
	e, admin := benchEnv(b, envOpts{})
	c := client(e, admin, true)
	r := request(b, e, c, http.MethodPost, api.PathSessions, nil, http.StatusCreated)
	var lr api.LoginResponse
	require.NoError(b, json.Unmarshal(r.body, &lr))
	return r.body, request(b, e, c, http.MethodGet, api.PathSessionsSelf, withToken(lr.Token), http.StatusOK).body
}

// withToken is the Authorization header of token, made once before a loop
// as a client would (a client that built "Bearer "+token at every request
// would add its allocation to the session's cost).
func withToken(token string) []string {
	return []string{"Authorization", "Bearer " + token}
}

// request sends one request through c's Transport, with the headers hdr
// (name, value, ...), and fails unless it is answered want. It sends as
// pkg/client does, with RoundTrip: http.Client.Do would also copy the
// request's headers at every request, for redirects that tether's client
// never follows, and that copy, of the token too, would count as the
// session's cost. It is timed: no t.Helper and no testify (whose
// bookkeeping would be measured with it) here, in login, or in the loops.
func request(b *testing.B, e *env, c *http.Client, method, path string, hdr []string, want int) reply {
	r, err := e.send(c.Transport.RoundTrip, method, path, nil, hdr...)
	if err != nil || r.status != want {
		b.Fatalf("%s %s: %v %d %s", method, path, err, r.status, r.body)
	}
	return r
}

// login is POST /v1/sessions over c. Its token is not remembered for the
// log check: there is no log, and a benchmark logs in b.N times.
func login(b *testing.B, e *env, c *http.Client) api.LoginResponse {
	var lr api.LoginResponse
	if err := json.Unmarshal(request(b, e, c, http.MethodPost, api.PathSessions, nil, http.StatusCreated).body, &lr); err != nil {
		b.Fatal(err)
	}
	return lr
}

// BenchmarkRequestWithSession is GET /v1/sessions/self over a kept-alive mTLS
// connection: peer check, bearer token, session validation and the JSON
// answer, end to end.
func BenchmarkRequestWithSession(b *testing.B) {
	e, admin := benchEnv(b, envOpts{})
	c := client(e, admin, true)
	hdr := withToken(login(b, e, c).Token)
	request(b, e, c, http.MethodGet, api.PathSessionsSelf, hdr, http.StatusOK) // the connection is open
	loop(b, func() { request(b, e, c, http.MethodGet, api.PathSessionsSelf, hdr, http.StatusOK) })
}

// BenchmarkRequestBaseline is BenchmarkRequestWithSession's request served
// by the canned handler on the same server and TLS configuration.
func BenchmarkRequestBaseline(b *testing.B) {
	_, self := answers(b)
	e, admin := benchEnv(b, envOpts{serve: canned(http.StatusOK, self)})
	c := client(e, admin, true)
	request(b, e, c, http.MethodGet, api.PathSessionsSelf, nil, http.StatusOK)
	loop(b, func() { request(b, e, c, http.MethodGet, api.PathSessionsSelf, nil, http.StatusOK) })
}

// BenchmarkRequestTokenBaseline is BenchmarkRequestBaseline with a session's
// bearer token (the Manager's, bound to the admin's leaf) in the request,
// which the canned handler ignores: next to BenchmarkRequestBaseline it is
// the cost of carrying the token, next to BenchmarkRequestWithSession the
// cost of checking it and answering.
func BenchmarkRequestTokenBaseline(b *testing.B) {
	_, self := answers(b)
	e, admin := benchEnv(b, envOpts{serve: canned(http.StatusOK, self)})
	tok, _, err := e.mgr.Login(context.Background(), session.Peer{ID: admin.ID, Fingerprint: svid.Fingerprint(admin.Certificates[0])})
	require.NoError(b, err)
	c := client(e, admin, true)
	hdr := withToken(tok)
	request(b, e, c, http.MethodGet, api.PathSessionsSelf, hdr, http.StatusOK)
	loop(b, func() { request(b, e, c, http.MethodGet, api.PathSessionsSelf, hdr, http.StatusOK) })
}

// BenchmarkLogin is a fresh TLS 1.3 handshake plus POST /v1/sessions. The
// login rate limit is off and the caps are out of reach; each session is
// revoked in-process after its login (a few microseconds) so the store stays
// small.
func BenchmarkLogin(b *testing.B) {
	e, admin := benchEnv(b, envOpts{session: session.Config{MaxSessions: 1 << 30, MaxSessionsPerIdentity: 1 << 30}})
	c := client(e, admin, false)
	ctx := context.Background()
	loop(b, func() {
		lr := login(b, e, c)
		if err := e.mgr.Revoke(ctx, lr.Session.SessionID); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkHandshakeBaseline is a fresh TLS 1.3 handshake plus a POST to the
// canned handler (a login's answer) on the same server and TLS
// configuration.
func BenchmarkHandshakeBaseline(b *testing.B) {
	loginBody, _ := answers(b)
	e, admin := benchEnv(b, envOpts{serve: canned(http.StatusCreated, loginBody)})
	c := client(e, admin, false)
	loop(b, func() { request(b, e, c, http.MethodPost, api.PathSessions, nil, http.StatusCreated) })
}

// BenchmarkHandlerSelf is the server's own work for GET /v1/sessions/self,
// without TLS, sockets or a client: the API handler as tetherd builds it
// (metrics registered, a JSON log at info level) called in a loop with one
// request from a connection whose peer is cached (auth.ConnContext), and a
// ResponseWriter that keeps nothing. It is what BenchmarkRequestWithSession
// adds to BenchmarkRequestBaseline on the server side, minus reading the
// token's header line.
func BenchmarkHandlerSelf(b *testing.B) {
	e, admin := benchEnv(b, envOpts{})
	h := server.NewHandler(server.Config{
		Sessions: e.mgr, Bundles: e.src,
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registerer: prometheus.NewRegistry(),
	})
	tok, _, err := e.mgr.Login(context.Background(), session.Peer{ID: admin.ID, Fingerprint: svid.Fingerprint(admin.Certificates[0]), NotAfter: admin.Certificates[0].NotAfter})
	require.NoError(b, err)
	conn := stateConn{state: tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: admin.Certificates}}
	r := httptest.NewRequest(http.MethodGet, api.PathSessionsSelf, nil)
	r = r.WithContext(auth.ConnContext(r.Context(), conn))
	r.Header.Set("Authorization", "Bearer "+tok)
	r.RemoteAddr = "127.0.0.1:40000"
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	require.Equal(b, http.StatusOK, w.status)
	loop(b, func() {
		clear(w.h)
		w.status = 0
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatal(w.status)
		}
	})
}

// stateConn is a connection that is TLS without being a *tls.Conn, as
// server.Listener's are: auth.ConnContext takes its state from it.
type stateConn struct {
	net.Conn
	state tls.ConnectionState
}

func (c stateConn) ConnectionState() tls.ConnectionState { return c.state }

func (c stateConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// discardWriter is a ResponseWriter that remembers the status only.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
