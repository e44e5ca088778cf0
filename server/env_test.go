package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// The trust domain's identities in every test of the package: tetherd, two
// admins, a workload that is no admin and the introspector.
const (
	serverID = "spiffe://example.org/tetherd"
	aliceID  = "spiffe://example.org/admin/alice"
	bobID    = "spiffe://example.org/admin/bob"
	webID    = "spiffe://example.org/workload/web"
	introID  = "spiffe://example.org/svc/gateway"
)

// env is the API every test, fuzzer and benchmark of the package runs
// against: tetherd's handler over a session.Manager, served as tetherd
// serves it (ServerTLSConfig, NewHTTPServer and the connection Listener on a
// loopback port), for a CA of example.org, on a manual clock, logging JSON
// at debug level into log. When the test ends, the log must hold no panic
// and no token the test saw, nor a recognisable part of one.
type env struct {
	t       testing.TB
	o       envOpts
	ca      *testpki.CA
	bundles *x509bundle.Set
	src     *svid.StaticSource // tetherd's SVID and the bundles
	mgr     *session.Manager
	handler http.Handler // the API, for tests that call it without TLS
	srv     *http.Server // serving the API
	addr    string       // host:port of the API
	url     string       // https://addr
	log     *testutil.Buffer
	logger  *slog.Logger // nil when quiet
	clock   *testutil.Clock

	mu     sync.Mutex
	tokens []string // every token seen in the test: none may reach the log
}

// envOpts are what a test changes of the env; the zero value is the API as
// tetherd serves it by default.
type envOpts struct {
	// session configures the Manager. Issuer, Logger and Now are the env's;
	// a zero TTL is an hour, IdleTimeout ten minutes, LoginRate unlimited.
	session session.Config
	// conns are the Listener's limits.
	conns server.ConnLimits
	// tweakSrv changes the *http.Server before it serves.
	tweakSrv func(*http.Server)
	// registerer, if set, takes the handler's and the listener's metrics.
	registerer prometheus.Registerer
	// now, if set, is the clock of the Manager and the handler instead of the
	// env's manual one.
	now func() time.Time
	// serve, if set, is what is served instead of the API (a baseline).
	serve http.Handler
	// logTo, if set, takes the log instead of log (a fuzzer resets it for
	// each input, and checks it itself).
	logTo io.Writer
	// quiet leaves the Manager, the handler and the server without a logger,
	// as the benchmarks measure them.
	quiet bool
}

func newEnv(tb testing.TB, o envOpts) *env {
	tb.Helper()
	e := &env{t: tb, o: o, ca: testpki.NewCA(tb, "example.org"), log: &testutil.Buffer{}, clock: testutil.NewClock(time.Now())}
	e.bundles = x509bundle.NewSet(e.ca.Bundle())
	e.src = &svid.StaticSource{SVID: e.ca.Issue(tb, serverID), Bundles: e.bundles}
	if !o.quiet {
		var w io.Writer = e.log
		if o.logTo != nil {
			w = o.logTo
		}
		e.logger = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	now := o.now
	if now == nil {
		now = e.clock.Now
	}
	cfg := o.session
	cfg.Issuer, cfg.Logger, cfg.Now = e.src.SVID.ID, e.logger, now
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.LoginRate == 0 {
		cfg.LoginRate = rate.Inf
	}
	var err error
	e.mgr, err = session.NewManager(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = e.mgr.Close() })
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(tb, err)
	intros, err := auth.ParsePolicy([]string{introID})
	require.NoError(tb, err)
	e.handler = server.NewHandler(server.Config{
		Sessions: e.mgr, Bundles: e.src, Admins: admins, Introspectors: intros,
		Logger: e.logger, Now: now, Registerer: o.registerer,
	})
	served := e.handler
	if o.serve != nil {
		served = o.serve
	}
	e.srv, e.addr = e.serveTLS(served)
	e.url = "https://" + e.addr
	tb.Cleanup(e.checkLog)
	return e
}

// serveTLS runs h as tetherd runs the API, on a loopback port, until the
// test ends.
func (e *env) serveTLS(h http.Handler) (*http.Server, string) {
	tlsCfg := auth.ServerTLSConfig(e.src, e.src)
	srv := server.NewHTTPServer(h, tlsCfg, e.logger)
	if e.o.tweakSrv != nil {
		e.o.tweakSrv(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(e.t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(server.NewListener(ln, tlsCfg, e.o.conns, e.logger, e.o.registerer))
	}()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	})
	return srv, ln.Addr().String()
}

// remember adds tokens to those that must not reach the log.
func (e *env) remember(tokens ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens = append(e.tokens, tokens...)
}

// checkLog: no panic was logged, and no token, nor its payload or signature,
// nor a 16-character prefix of any of them, is in the log (which is not
// empty if there were tokens to look for).
func (e *env) checkLog() {
	log := e.log.String()
	for _, bad := range []string{"panic", "goroutine "} {
		require.NotContains(e.t, log, bad, "the log mentions %q", bad)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.tokens) > 0 && e.o.logTo == nil && !e.o.quiet {
		require.NotEmpty(e.t, log, "tokens were handed out but nothing was logged")
	}
	for _, tok := range e.tokens {
		needles := []string{tok}
		if len(tok) >= 16 {
			needles = append(needles, tok[:16])
		}
		for _, part := range strings.Split(tok, ".")[1:] {
			if len(part) >= 16 {
				needles = append(needles, part, part[:16])
			}
		}
		for _, n := range needles {
			require.False(e.t, strings.Contains(log, n), "a token (or a part of one: %.24q...) is in the log", n)
		}
	}
}

// client is an mTLS client presenting s (valid or not), checking the
// server's SVID as a SPIFFE client does. tlsMax, if set, caps the version.
func (e *env) client(s *x509svid.SVID, tlsMax uint16) *http.Client {
	src := &svid.StaticSource{SVID: s, Bundles: e.bundles}
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
	cfg.MinVersion = tls.VersionTLS13
	if tlsMax != 0 {
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tlsMax
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// dialAPI opens one TLS connection to the API as s.
func (e *env) dialAPI(t *testing.T, s *x509svid.SVID) (*tls.Conn, error) {
	t.Helper()
	src := &svid.StaticSource{SVID: s, Bundles: e.bundles}
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
	cfg.MinVersion = tls.VersionTLS13
	c, err := tls.Dial("tcp", e.addr, cfg)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// reply is an answer of the API, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// code is the error code of the answer, "" if it is no JSON error.
func (r reply) code() api.Code {
	var er api.ErrorResponse
	if json.Unmarshal(r.body, &er) != nil || er.Error == nil {
		return ""
	}
	return er.Error.Code
}

func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

// do sends one request to the API over c; headers are name/value pairs.
// Safe in any goroutine: it checks nothing.
func (e *env) do(c *http.Client, method, path string, body io.Reader, headers ...string) (reply, error) {
	return e.send(c.Do, method, path, body, headers...)
}

// send is do through send (an http.Client's Do, or a Transport's
// RoundTrip). A header's first value is the caller's own slice, capped so
// that a second value of the same name is appended to a copy: setting
// headers allocates nothing, which the benchmarks measure.
func (e *env) send(send func(*http.Request) (*http.Response, error), method, path string, body io.Reader, headers ...string) (reply, error) {
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		k := textproto.CanonicalMIMEHeaderKey(headers[i])
		if vs := req.Header[k]; vs != nil {
			req.Header[k] = append(vs, headers[i+1])
		} else {
			req.Header[k] = headers[i+1 : i+2 : i+2]
		}
	}
	resp, err := send(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// login logs c in and returns the token, remembered, and the session.
func (e *env) login(c *http.Client) (string, api.Session) {
	e.t.Helper()
	r, err := e.do(c, http.MethodPost, api.PathSessions, nil)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusCreated, r.status, string(r.body))
	var lr api.LoginResponse
	r.decode(e.t, &lr)
	require.NotEmpty(e.t, lr.Token)
	e.remember(lr.Token)
	return lr.Token, lr.Session
}

// serveHTTP calls the API handler directly with req, as if it had come over
// a TLS connection that verified leaf.
func (e *env) serveHTTP(req *http.Request, leaf *x509.Certificate) *httptest.ResponseRecorder {
	req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
	req.RemoteAddr = "192.0.2.1:4242"
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

// identity is a client of the API with one SVID, for tests that check
// every answer as they go.
type identity struct {
	e    *env
	svid *x509svid.SVID
	c    *http.Client
}

// as is a client of the API with a new SVID for id.
func (e *env) as(id string) *identity {
	s := e.ca.Issue(e.t, id)
	return &identity{e: e, svid: s, c: e.client(s, 0)}
}

func (i *identity) fp() string { return svid.Fingerprint(i.svid.Certificates[0]) }

// do sends one request with token (if any) and headers (name/value pairs);
// an error answer must be the API's JSON error with a code.
func (i *identity) do(method, path, token string, body io.Reader, hdr ...string) reply {
	t := i.e.t
	t.Helper()
	if token != "" {
		hdr = append([]string{"Authorization", "Bearer " + token}, hdr...)
	}
	r, err := i.e.do(i.c, method, path, body, hdr...)
	require.NoError(t, err)
	if r.status >= 400 {
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		require.NotEmpty(t, r.code(), "every error has a code: %s", r.body)
	}
	return r
}

// login logs the identity in.
func (i *identity) login() (string, api.Session) {
	i.e.t.Helper()
	return i.e.login(i.c)
}

// must returns v, failing loudly on err: for calls a memory store never
// fails (it is always fresh and never unreachable).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
