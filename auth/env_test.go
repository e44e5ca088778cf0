package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// bundles is a bundle source whose content a test can change, and which
// counts how often it is asked.
type bundles struct {
	mu   sync.Mutex
	set  *x509bundle.Set
	gets int
}

func (b *bundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gets++
	return b.set.GetX509BundleForTrustDomain(td)
}

// asked is how often the bundles were asked for so far.
func (b *bundles) asked() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gets
}

func (b *bundles) replace(bs ...*x509bundle.Bundle) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set = x509bundle.NewSet(bs...)
}

// pathSession is where env serves RequireSession; every other path is
// RequirePeer.
const pathSession = "/v1/sessions/self"

// env is the middleware every test and fuzzer of the package runs against:
// for a CA of example.org whose bundle a test can replace, an
// auth.Middleware (the bundles, a session.Manager, a manual clock, a JSON
// log at debug level) in front of a handler that answers 200 with the
// caller's SPIFFE ID and fingerprint: RequireSession at pathSession,
// RequirePeer everywhere else. It is served over auth.ServerTLSConfig (with
// auth.ConnContext) at srv.URL, and can be called without TLS (serveHTTP).
type env struct {
	t       testing.TB
	ca      *testpki.CA
	bundles *bundles
	clock   *testutil.Clock
	log     *testutil.Buffer
	mgr     *session.Manager
	mw      *auth.Middleware
	handler http.Handler
	srv     *httptest.Server
}

// envOpts are what a test changes of the env.
type envOpts struct {
	// mw changes the middleware before it serves (no Bundles, OnError...).
	mw func(*auth.Middleware)
	// tls, if set, is the server's TLS configuration instead of
	// auth.ServerTLSConfig with tetherd's SVID and the bundles.
	tls func(e *env) *tls.Config
	// logTo, if set, takes the log instead of log (a fuzzer resets it for
	// each input).
	logTo io.Writer
	// routes, if set, adds handlers to the env's mux, with the middleware
	// made.
	routes func(e *env, mux *http.ServeMux)
}

func newEnv(tb testing.TB, o envOpts) *env {
	tb.Helper()
	e := &env{t: tb, ca: testpki.NewCA(tb, "example.org"), bundles: &bundles{}, clock: testutil.NewClock(time.Now()), log: &testutil.Buffer{}}
	e.bundles.replace(e.ca.Bundle())
	var w io.Writer = e.log
	if o.logTo != nil {
		w = o.logTo
	}
	logger := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	e.mgr, err = session.NewManager(session.Config{
		Issuer: spiffeid.RequireFromString("spiffe://example.org/tetherd"), LoginRate: rate.Inf,
		SweepInterval: time.Hour, Logger: logger, Now: e.clock.Now,
	})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = e.mgr.Close() })
	e.mw = &auth.Middleware{Sessions: e.mgr, Bundles: e.bundles, Logger: logger, Now: e.clock.Now}
	if o.mw != nil {
		o.mw(e.mw)
	}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := auth.CallerFrom(r.Context())
		if !ok {
			http.Error(w, "no caller", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, c.Peer.ID.String()+" "+c.Peer.Fingerprint)
	})
	mux := http.NewServeMux()
	mux.Handle(pathSession, e.mw.RequireSession(echo))
	mux.Handle("/", e.mw.RequirePeer(echo))
	if o.routes != nil {
		o.routes(e, mux)
	}
	e.handler = mux
	e.srv = httptest.NewUnstartedServer(e.handler)
	if o.tls != nil {
		e.srv.TLS = o.tls(e)
	} else {
		e.srv.TLS = auth.ServerTLSConfig(&svid.StaticSource{SVID: e.ca.Issue(tb, "spiffe://example.org/tetherd")}, e.bundles)
	}
	e.srv.Config.ConnContext = auth.ConnContext
	e.srv.StartTLS()
	tb.Cleanup(e.srv.Close)
	return e
}

// client returns an HTTP client presenting cert, with a session cache so
// that it resumes TLS sessions.
func (e *env) client(cert tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates:       []tls.Certificate{cert},
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
		// SVIDs carry no DNS name; the server is not what these tests check.
		InsecureSkipVerify: true, //nolint:gosec // test client; the server side is under test
		MinVersion:         tls.VersionTLS13,
	}}}
}

// get is GET url over c: the answer and its body, or the error.
func get(t testing.TB, c *http.Client, url string) (*http.Response, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b), nil
}

// serveHTTP calls the handler directly with req, as if it had come over a
// TLS connection presenting chain, which the TLS layer verified or not.
func (e *env) serveHTTP(req *http.Request, chain []*x509.Certificate, verified bool) *httptest.ResponseRecorder {
	req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: chain}
	if verified {
		req.TLS.VerifiedChains = [][]*x509.Certificate{chain}
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}
