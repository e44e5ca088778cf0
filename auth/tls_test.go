package auth_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

func TestServerTLSAcceptsSVID(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	resp, body, err := get(t, e.client(testpki.TLSCertificate(alice)), e.srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "spiffe://example.org/admin/alice "+svid.Fingerprint(alice.Certificates[0]), body)
	require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
}

func TestServerTLSRefuses(t *testing.T) {
	e := newEnv(t, envOpts{})
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
	e := newEnv(t, envOpts{})
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
	e := newEnv(t, envOpts{})
	c, alice := e.openConnection(t, "spiffe://example.org/admin/alice")
	e.clock.Add(alice.Certificates[0].NotAfter.Sub(e.clock.Now()) + time.Second)
	body := refusedOnOpenConnection(t, c, e.srv.URL)
	require.Contains(t, body, "expired")
	// The refusal's line names the identity whose leaf expired.
	require.Contains(t, e.log.String(), `"reason":"leaf_expired"`)
	require.Regexp(t, `"msg":"session.rejected"[^\n]*"spiffe_id":"spiffe://example.org/admin/alice"[^\n]*"reason":"leaf_expired"|"reason":"leaf_expired"[^\n]*"spiffe_id":"spiffe://example.org/admin/alice"`, e.log.String())
	// PeerFromRequest, for embedders, still returns no peer with the refusal.
	req := httptest.NewRequest(http.MethodGet, "https://x/", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: alice.Certificates}
	p, err := auth.PeerFromRequest(req, alice.Certificates[0].NotAfter.Add(time.Second))
	require.Error(t, err)
	require.True(t, p.ID.IsZero(), "a refused peer is not returned")
}

// openConnection issues an SVID for id and returns a client holding a
// kept-alive connection that one successful request opened.
func (e *env) openConnection(t *testing.T, id string) (*http.Client, *x509svid.SVID) {
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
	for name, replace := range map[string]func(e *env){
		"ca-removed":        func(e *env) { e.bundles.replace(testpki.NewCA(t, "example.org").Bundle()) },
		"trust-domain-gone": func(e *env) { e.bundles.replace(testpki.NewCA(t, "other.org").Bundle()) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			c, _ := e.openConnection(t, "spiffe://example.org/admin/alice")
			replace(e)
			refusedOnOpenConnection(t, c, e.srv.URL)
		})
	}
}

// TestHandshakeVerificationCounts: a connection's first request does not
// verify against the bundle again the chain its handshake just verified
// against that same bundle; it only checks that the bundle is the same (one
// lookup), as every later request does.
func TestHandshakeVerificationCounts(t *testing.T) {
	e := newEnv(t, envOpts{})
	c, _ := e.openConnection(t, "spiffe://example.org/admin/alice")
	// The handshake's verification, then the first request's lookup (no
	// Verify, which would look the bundle up once more).
	require.Equal(t, 2, e.bundles.asked())
	resp, _, err := get(t, c, e.srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 3, e.bundles.asked())
}

// TestBundleChangedBeforeFirstRequest: a bundle that changes between a
// connection's handshake and its first request makes that request verify
// the chain again, against the new bundle: a CA removed in between is
// refused at once.
func TestBundleChangedBeforeFirstRequest(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	conn, err := tls.Dial("tcp", e.srv.Listener.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{testpki.TLSCertificate(alice)},
		// SVIDs carry no DNS name; the server is not what this test checks.
		InsecureSkipVerify: true, //nolint:gosec // test client; the server side is under test
		MinVersion:         tls.VersionTLS13,
	})
	require.NoError(t, err)
	defer conn.Close()
	// The client's side of a TLS 1.3 handshake ends before the server has
	// verified its certificate: wait for the server's verification.
	require.Eventually(t, func() bool { return e.bundles.asked() == 1 }, 5*time.Second, time.Millisecond)
	e.bundles.replace(testpki.NewCA(t, "example.org").Bundle()) // the CA is gone
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.True(t, resp.Close, "the connection is closed")
}

// TestMiddlewareNeedsVerifiedPeers: an embedder whose TLS layer accepts any
// client certificate (RequireAnyClientCert) cannot get a trusting middleware
// by mistake: without Bundles it refuses peers the TLS layer did not verify,
// and with Bundles it verifies the chain itself.
func TestMiddlewareNeedsVerifiedPeers(t *testing.T) {
	rogue := testpki.NewCA(t, "example.org") // same trust domain, not trusted
	mallory := rogue.Issue(t, "spiffe://example.org/admin/mallory")
	// The server's TLS layer takes any client certificate; verify, if set,
	// makes it verify the chain against the env's CA.
	anyCert := func(verify bool) func(e *env) *tls.Config {
		return func(e *env) *tls.Config {
			cfg := &tls.Config{
				MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
				Certificates: []tls.Certificate{testpki.TLSCertificate(e.ca.Issue(t, "spiffe://example.org/svc"))},
			}
			if verify {
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
				cfg.ClientCAs = x509.NewCertPool()
				cfg.ClientCAs.AddCert(e.ca.Cert)
			}
			return cfg
		}
	}
	noBundles := func(mw *auth.Middleware) { mw.Bundles = nil }

	t.Run("no-bundles-any-cert", func(t *testing.T) {
		e := newEnv(t, envOpts{mw: noBundles, tls: anyCert(false)})
		for _, who := range []*x509svid.SVID{mallory, e.ca.Issue(t, "spiffe://example.org/admin/alice")} {
			resp, body, err := get(t, e.client(testpki.TLSCertificate(who)), e.srv.URL)
			require.NoError(t, err)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
		}
		require.Contains(t, e.log.String(), "auth.misconfigured")
	})
	t.Run("bundles-any-cert", func(t *testing.T) {
		e := newEnv(t, envOpts{tls: anyCert(false)})
		resp, body, err := get(t, e.client(testpki.TLSCertificate(mallory)), e.srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
		alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
		resp, body, err = get(t, e.client(testpki.TLSCertificate(alice)), e.srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "spiffe://example.org/admin/alice "+svid.Fingerprint(alice.Certificates[0]), body)
	})
	t.Run("no-bundles-verified-by-tls", func(t *testing.T) {
		e := newEnv(t, envOpts{mw: noBundles, tls: anyCert(true)})
		resp, body, err := get(t, e.client(testpki.TLSCertificate(e.ca.Issue(t, "spiffe://example.org/admin/alice"))), e.srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	})
}

// TestClientLeafUsage: a leaf that is not an X.509-SVID client certificate is
// refused at the handshake, and by the middleware too when a TLS layer let it
// through: no digitalSignature key usage, or an extended key usage without
// clientAuth (server-only, code signing).
func TestClientLeafUsage(t *testing.T) {
	e := newEnv(t, envOpts{})
	// Behind a TLS layer that verified the chain only.
	chainOnly := newEnv(t, envOpts{mw: func(mw *auth.Middleware) { mw.Bundles = nil }})
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

			rec := chainOnly.serveHTTP(httptest.NewRequest(http.MethodGet, "https://tetherd/", nil), leaf.Certificates, true)
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
	var got api.Code
	e := newEnv(t, envOpts{mw: func(mw *auth.Middleware) {
		mw.Bundles = nil
		mw.OnError = func(w http.ResponseWriter, _ *http.Request, err error) {
			var a interface{ APIError() *api.Error }
			if errors.As(err, &a) {
				got = a.APIError().Code
			}
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, "refused, the embedder's way")
		}
	}})
	leaf := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	rec := e.serveHTTP(httptest.NewRequest(http.MethodGet, "https://tetherd/", nil), leaf.Certificates, false) // verified by nobody
	require.Equal(t, http.StatusTeapot, rec.Code)
	require.Equal(t, "refused, the embedder's way", rec.Body.String())
	require.Equal(t, api.CodeInvalidToken, got)
}

// TestRemoteAddrWithoutConnContext: the security events of a request carry
// its remote address whether or not the server set auth.ConnContext (which
// adds it once per connection): without it, the middleware adds it to the
// request's context itself.
func TestRemoteAddrWithoutConnContext(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	req := httptest.NewRequest(http.MethodGet, pathSession, nil)
	req.RemoteAddr = "192.0.2.7:4242"
	req.Header.Set("Authorization", "Bearer a.b.c")
	rec := e.serveHTTP(req, alice.Certificates, true)
	require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
	var ev map[string]any
	for line := range strings.Lines(e.log.String()) {
		if strings.Contains(line, `"session.rejected"`) {
			require.NoError(t, json.Unmarshal([]byte(line), &ev))
		}
	}
	require.NotNil(t, ev, "no session.rejected event: %s", e.log.String())
	require.Equal(t, "192.0.2.7:4242", ev["remote_addr"])
}
