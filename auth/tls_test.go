package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// bundles is a bundle source whose content a test can change.
type bundles struct {
	mu  sync.Mutex
	set *x509bundle.Set
}

func (b *bundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set.GetX509BundleForTrustDomain(td)
}

func (b *bundles) replace(bs ...*x509bundle.Bundle) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set = x509bundle.NewSet(bs...)
}

type tlsEnv struct {
	ca      *testpki.CA
	bundles *bundles
	srv     *httptest.Server
	now     atomic.Pointer[time.Time]
}

// newTLSEnv serves, over auth.ServerTLSConfig, a handler that answers with
// the caller's SPIFFE ID and fingerprint, behind Middleware.RequirePeer.
func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	e := &tlsEnv{ca: testpki.NewCA(t, "example.org"), bundles: &bundles{}}
	e.bundles.replace(e.ca.Bundle())
	serverSVID := e.ca.Issue(t, "spiffe://example.org/tetherd")
	mw := &auth.Middleware{Bundles: e.bundles, Now: func() time.Time {
		if p := e.now.Load(); p != nil {
			return *p
		}
		return time.Now()
	}}
	h := mw.RequirePeer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := auth.CallerFrom(r.Context())
		if !ok {
			http.Error(w, "no caller", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, c.Peer.ID.String()+" "+c.Peer.Fingerprint)
	}))
	e.srv = httptest.NewUnstartedServer(h)
	e.srv.TLS = auth.ServerTLSConfig(&svid.StaticSource{SVID: serverSVID}, e.bundles)
	e.srv.Config.ConnContext = auth.ConnContext
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// client returns an HTTP client presenting cert, trusting the test CA for
// the server, with a session cache so that it resumes TLS sessions.
func (e *tlsEnv) client(cert tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates:       []tls.Certificate{cert},
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
		// SVIDs carry no DNS name; the server is checked by chain only here.
		InsecureSkipVerify: true, //nolint:gosec // test client; the server side is under test
		MinVersion:         tls.VersionTLS13,
	}}}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string, error) {
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

func TestServerTLSAcceptsSVID(t *testing.T) {
	e := newTLSEnv(t)
	alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	resp, body, err := get(t, e.client(testpki.TLSCertificate(alice)), e.srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "spiffe://example.org/admin/alice "+svid.Fingerprint(alice.Certificates[0]), body)
	require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
}

func TestServerTLSRefuses(t *testing.T) {
	e := newTLSEnv(t)
	foreign := testpki.NewCA(t, "evil.org")
	now := time.Now()
	for _, tc := range []struct {
		name string
		cert func() tls.Certificate
		tls  func(*tls.Config)
	}{
		{"fail/no-certificate", func() tls.Certificate { return tls.Certificate{} }, nil},
		{"fail/foreign-trust-domain", func() tls.Certificate {
			return testpki.TLSCertificate(foreign.Issue(t, "spiffe://evil.org/admin/alice"))
		}, nil},
		{"fail/foreign-ca-claiming-our-domain", func() tls.Certificate {
			return testpki.TLSCertificate(foreign.Issue(t, "spiffe://example.org/admin/alice"))
		}, nil},
		{"fail/expired", func() tls.Certificate {
			return testpki.TLSCertificate(e.ca.Issue(t, "spiffe://example.org/admin/alice", testpki.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour))))
		}, nil},
		{"fail/not-yet-valid", func() tls.Certificate {
			return testpki.TLSCertificate(e.ca.Issue(t, "spiffe://example.org/admin/alice", testpki.WithValidity(now.Add(time.Hour), now.Add(2*time.Hour))))
		}, nil},
		{"fail/two-ids", func() tls.Certificate {
			return testpki.TLSCertificate(e.ca.Issue(t, "", testpki.WithURIs("spiffe://example.org/admin/alice", "spiffe://example.org/admin/bob")))
		}, nil},
		{"fail/no-id", func() tls.Certificate {
			return testpki.TLSCertificate(e.ca.Issue(t, "", testpki.WithURIs()))
		}, nil},
		{"fail/ca-as-leaf", func() tls.Certificate {
			return testpki.TLSCertificate(e.ca.Issue(t, "spiffe://example.org/admin/alice", testpki.AsCA()))
		}, nil},
		{"fail/tls12", func() tls.Certificate {
			return testpki.TLSCertificate(e.ca.Issue(t, "spiffe://example.org/admin/alice"))
		}, func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(tc.cert())
			if tc.tls != nil {
				tc.tls(c.Transport.(*http.Transport).TLSClientConfig)
			}
			resp, _, err := get(t, c, e.srv.URL)
			require.Error(t, err, "the handshake must fail, got %v", resp)
		})
	}
}

// TestServerTLSChecksResumedSessions proves that a resumed TLS session is
// checked like a full handshake: once the CA that issued the client's leaf is
// no longer trusted, a session ticket issued before does not get it in.
// (go-spiffe's tlsconfig helpers check in VerifyPeerCertificate, which Go
// skips on resumption.)
func TestServerTLSChecksResumedSessions(t *testing.T) {
	e := newTLSEnv(t)
	alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	c := e.client(testpki.TLSCertificate(alice))
	tr := c.Transport.(*http.Transport)

	resp, _, err := get(t, c, e.srv.URL)
	require.NoError(t, err)
	require.False(t, resp.TLS.DidResume)
	tr.CloseIdleConnections()

	resp, body, err := get(t, c, e.srv.URL)
	require.NoError(t, err)
	require.True(t, resp.TLS.DidResume, "the second connection must resume for this test to mean anything")
	require.Equal(t, "spiffe://example.org/admin/alice "+svid.Fingerprint(alice.Certificates[0]), body,
		"a resumed connection still carries the leaf the session is bound to")
	tr.CloseIdleConnections()

	// The trust domain's CA is rotated out: the old leaf must not resume.
	e.bundles.replace(testpki.NewCA(t, "example.org").Bundle())
	_, _, err = get(t, c, e.srv.URL)
	require.Error(t, err, "a resumed handshake with a no-longer-trusted leaf must fail")
}

// TestLeafExpiryOnOpenConnection: a connection outlives its certificate; the
// next request after the leaf's NotAfter is refused and the connection closed.
func TestLeafExpiryOnOpenConnection(t *testing.T) {
	e := newTLSEnv(t)
	c, alice := e.openConnection(t, "spiffe://example.org/admin/alice")
	later := alice.Certificates[0].NotAfter.Add(time.Second)
	e.now.Store(&later)
	body := refusedOnOpenConnection(t, c, e.srv.URL)
	require.Contains(t, body, "expired")
}

// openConnection issues an SVID for id and returns a client holding a
// kept-alive connection that one successful request opened.
func (e *tlsEnv) openConnection(t *testing.T, id string) (*http.Client, *x509svid.SVID) {
	t.Helper()
	s := e.ca.Issue(t, id)
	c := e.client(testpki.TLSCertificate(s))
	resp, _, err := get(t, c, e.srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return c, s
}

// refusedOnOpenConnection makes a request that must travel on c's already
// open connection and be refused with 401 invalid_token and the connection
// closed; it returns the answer's body.
func refusedOnOpenConnection(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	var reused bool
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.True(t, reused, "the request must travel on the already open connection")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, string(b), `"invalid_token"`)
	require.True(t, resp.Close, "the server closes the connection")
	return string(b)
}

// TestOpenConnectionLosesTrust: once the trust bundle no longer holds the CA
// of a kept-alive connection's leaf (the CA rotated out, or the trust domain
// dropped), the next request on that very connection is refused and the
// connection closed: a connection is never trusted longer than its CA.
func TestOpenConnectionLosesTrust(t *testing.T) {
	for name, replace := range map[string]func(e *tlsEnv){
		"ca-removed":        func(e *tlsEnv) { e.bundles.replace(testpki.NewCA(t, "example.org").Bundle()) },
		"trust-domain-gone": func(e *tlsEnv) { e.bundles.replace(testpki.NewCA(t, "other.org").Bundle()) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newTLSEnv(t)
			c, _ := e.openConnection(t, "spiffe://example.org/admin/alice")
			replace(e)
			refusedOnOpenConnection(t, c, e.srv.URL)
		})
	}
}

// TestMiddlewareNeedsVerifiedPeers: an embedder whose TLS layer accepts any
// client certificate (RequireAnyClientCert) cannot get a trusting middleware
// by mistake: without Bundles it refuses peers the TLS layer did not verify,
// and with Bundles it verifies the chain itself.
func TestMiddlewareNeedsVerifiedPeers(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	rogue := testpki.NewCA(t, "example.org") // same trust domain, not trusted
	serverSVID := ca.Issue(t, "spiffe://example.org/svc")
	trusted := &bundles{}
	trusted.replace(ca.Bundle())
	serve := func(t *testing.T, mw *auth.Middleware, tlsCfg *tls.Config) *httptest.Server {
		srv := httptest.NewUnstartedServer(mw.RequirePeer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := auth.CallerFrom(r.Context())
			_, _ = io.WriteString(w, c.Peer.ID.String())
		})))
		srv.TLS = tlsCfg
		srv.Config.ConnContext = auth.ConnContext
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	anyCert := func() *tls.Config {
		return &tls.Config{
			MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
			Certificates: []tls.Certificate{testpki.TLSCertificate(serverSVID)},
		}
	}
	e := &tlsEnv{ca: ca}
	mallory := rogue.Issue(t, "spiffe://example.org/admin/mallory")
	alice := ca.Issue(t, "spiffe://example.org/admin/alice")

	t.Run("no-bundles-any-cert", func(t *testing.T) {
		logs := &testutil.Buffer{}
		srv := serve(t, &auth.Middleware{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, anyCert())
		for _, who := range []*x509svid.SVID{mallory, alice} {
			resp, body, err := get(t, e.client(testpki.TLSCertificate(who)), srv.URL)
			require.NoError(t, err)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
		}
		require.Contains(t, logs.String(), "auth.misconfigured")
	})
	t.Run("bundles-any-cert", func(t *testing.T) {
		srv := serve(t, &auth.Middleware{Bundles: trusted}, anyCert())
		resp, body, err := get(t, e.client(testpki.TLSCertificate(mallory)), srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
		resp, body, err = get(t, e.client(testpki.TLSCertificate(alice)), srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "spiffe://example.org/admin/alice", body)
	})
	t.Run("no-bundles-verified-by-tls", func(t *testing.T) {
		cfg := anyCert()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = x509.NewCertPool()
		cfg.ClientCAs.AddCert(ca.Cert)
		srv := serve(t, &auth.Middleware{}, cfg)
		resp, body, err := get(t, e.client(testpki.TLSCertificate(alice)), srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	})
}

// TestClientLeafUsage: a leaf that is not an X.509-SVID client certificate is
// refused at the handshake, and by the middleware too when a TLS layer let it
// through: no digitalSignature key usage, or an extended key usage without
// clientAuth (server-only, code signing).
func TestClientLeafUsage(t *testing.T) {
	e := newTLSEnv(t)
	usage := func(ku x509.KeyUsage, eku ...x509.ExtKeyUsage) testpki.Option {
		return func(c *x509.Certificate) { c.KeyUsage, c.ExtKeyUsage = ku, eku }
	}
	cases := map[string]testpki.Option{
		"no-digital-signature": usage(x509.KeyUsageKeyEncipherment, x509.ExtKeyUsageClientAuth),
		"no-key-usage":         usage(0, x509.ExtKeyUsageClientAuth),
		"server-auth-only":     usage(x509.KeyUsageDigitalSignature, x509.ExtKeyUsageServerAuth),
		"code-signing-only":    usage(x509.KeyUsageDigitalSignature, x509.ExtKeyUsageCodeSigning),
	}
	for name, opt := range cases {
		t.Run(name, func(t *testing.T) {
			leaf := e.ca.Issue(t, "spiffe://example.org/admin/alice", opt)
			_, _, err := get(t, e.client(testpki.TLSCertificate(leaf)), e.srv.URL)
			require.Error(t, err, "the handshake must fail")

			// Behind a TLS layer that verified the chain only.
			mw := &auth.Middleware{}
			h := mw.RequirePeer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
			req := httptest.NewRequest(http.MethodGet, "https://tetherd/", nil)
			req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: leaf.Certificates, VerifiedChains: [][]*x509.Certificate{leaf.Certificates}}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
		})
	}
	t.Run("digital-signature-and-no-eku", func(t *testing.T) {
		leaf := e.ca.Issue(t, "spiffe://example.org/admin/alice", usage(x509.KeyUsageDigitalSignature))
		resp, _, err := get(t, e.client(testpki.TLSCertificate(leaf)), e.srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
}

// TestMiddlewareOnError: an embedder answers refusals in its own format; the
// error still says the contract's code.
func TestMiddlewareOnError(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	var got api.Code
	mw := &auth.Middleware{OnError: func(w http.ResponseWriter, _ *http.Request, err error) {
		var a interface{ APIError() *api.Error }
		if errors.As(err, &a) {
			got = a.APIError().Code
		}
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "refused, the embedder's way")
	}}
	h := mw.RequirePeer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	leaf := ca.Issue(t, "spiffe://example.org/admin/alice")
	req := httptest.NewRequest(http.MethodGet, "https://tetherd/", nil)
	req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: leaf.Certificates} // not verified by anyone
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusTeapot, rec.Code)
	require.Equal(t, "refused, the embedder's way", rec.Body.String())
	require.Equal(t, api.CodeInvalidToken, got)
}
