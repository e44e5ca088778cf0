package server_test

// The adversarial table of issue 6, over real TLS: tetherd's handler behind
// auth.ServerTLSConfig and server.NewHTTPServer on a loopback listener, each
// case with the contract's exact status and code, no panic, and no token in
// the captured log. Then slow clients against the server's timeouts, and
// login hammering against the caps and the rate limit.
//
// Forged tokens are signed with keys the test controls (an attacker's): the
// signing key never leaves the Manager, so from outside every forgery is
// invalid_token whatever its claims say: a token is accepted only if its
// exact bytes hash to a live session (tokens re-signed with our own key are
// tested inside package session, TestReSignedTokensRefused).

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// --- forging tokens with keys the attacker controls --------------------------

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b64(b)
}

// tokenParts decodes a genuine token's header and claims.
func tokenParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.False(t, len(parts) != 3, "not a compact JWS: %d parts", len(parts))
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, dst))
	}
	return header, claims
}

func signES256(t *testing.T, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, claims)
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	require.NoError(t, err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64(sig)
}

func signEdDSA(t *testing.T, key ed25519.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, claims)
	return input + "." + b64(ed25519.Sign(key, []byte(input)))
}

func signHS256(t *testing.T, key []byte, header, claims map[string]any) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, claims)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// with returns a copy of m with key set to value (deleted if value is nil).
func with(m map[string]any, key string, value any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	if value == nil {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

// --- the table ----------------------------------------------------------------

// TestAdversarialTokens: every forged, foreign, truncated, oversized or
// misplaced token gets exactly the contract's answer over real TLS.
func TestAdversarialTokens(t *testing.T) {
	// The Manager's key, made here so that the test knows its public half
	// (tetherd publishes it nowhere, and an Ed25519 key cannot be recovered
	// from signatures); the HS256 cases below are keyed with it, as an
	// attacker who had it would.
	key, err := session.NewKey()
	require.NoError(t, err)
	e := newEnv(t, envOpts{session: session.Config{Key: key}})
	aliceSVID := e.ca.Issue(t, aliceID)
	alice := e.client(aliceSVID, 0)
	aliceNewLeaf := e.client(e.ca.Issue(t, aliceID), 0) // alice after her SVID rotated
	bob := e.client(e.ca.Issue(t, bobID), 0)

	tok, _ := e.login(alice)
	tok2, _ := e.login(alice)
	header, claims := tokenParts(t, tok)
	kid, _ := header["kid"].(string)
	require.False(t, header["alg"] != "EdDSA" || kid != key.KID(), "unexpected genuine header %v", header)

	// Keys the attacker controls, of both algorithms the contract allows,
	// and tetherd's public key in every form an HS256 confusion could use.
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, attackerEd, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ours := key.Public()
	spki, err := x509.MarshalPKIXPublicKey(ours)
	require.NoError(t, err)
	jwk, err := jose.JSONWebKey{Key: ours, KeyID: kid, Algorithm: "EdDSA", Use: "sig"}.MarshalJSON()
	require.NoError(t, err)
	hsKeys := map[string][]byte{
		"pem":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		"der":   spki,
		"jwk":   jwk,
		"point": ours, // the 32 bytes of RFC 8032
	}

	// Another tetherd instance: same issuer and same caller, its own key.
	other := newEnv(t, envOpts{quiet: true})
	foreignTok, _, err := other.mgr.Login(context.Background(), session.Peer{ID: aliceSVID.ID, Fingerprint: svid.Fingerprint(aliceSVID.Certificates[0])})
	require.NoError(t, err)

	es := func(h, c map[string]any) string { return signES256(t, attacker, h, c) }
	ed := func(h, c map[string]any) string { return signEdDSA(t, attackerEd, h, c) }
	oursHdr := map[string]any{"alg": "ES256", "typ": "JWT", "kid": kid}
	oursEdHdr := map[string]any{"alg": "EdDSA", "kid": kid}
	parts := strings.Split(tok, ".")
	megabyte := strings.Repeat("a", 1_000_000)

	type tcase struct {
		name    string
		client  *http.Client
		headers []string // Authorization and friends, as name/value pairs
		status  int
		code    api.Code
	}
	bearer := func(t string) []string { return []string{"Authorization", "Bearer " + t} }
	cases := []tcase{
		{"ok/genuine", alice, bearer(tok), 200, ""},
		{"fail/alg-none", alice, bearer(b64JSON(t, map[string]any{"alg": "none", "typ": "JWT", "kid": kid}) + "." + parts[1] + "."), 401, api.CodeInvalidToken},
		{"fail/alg-none-with-signature", alice, bearer(b64JSON(t, map[string]any{"alg": "none", "kid": kid}) + "." + parts[1] + "." + parts[2]), 401, api.CodeInvalidToken},
		{"fail/unknown-kid", alice, bearer(es(with(oursHdr, "kid", "zzzzzzzzzzzzzzzzzzzzzzzzzz"), claims)), 401, api.CodeInvalidToken},
		{"fail/no-kid", alice, bearer(es(with(oursHdr, "kid", nil), claims)), 401, api.CodeInvalidToken},
		{"fail/our-kid-attacker-key", alice, bearer(es(oursHdr, claims)), 401, api.CodeInvalidToken},
		{"fail/our-kid-attacker-ed25519-key", alice, bearer(ed(oursEdHdr, claims)), 401, api.CodeInvalidToken},
		{"fail/embedded-ed25519-jwk", alice, bearer(ed(with(oursEdHdr, "jwk", json.RawMessage(mustJWK(t, attackerEd.Public()))), claims)), 401, api.CodeInvalidToken},
		{"fail/embedded-jwk", alice, bearer(es(with(oursHdr, "jwk", json.RawMessage(mustJWK(t, &attacker.PublicKey))), claims)), 401, api.CodeInvalidToken},
		{"fail/another-tetherd-instance", alice, bearer(foreignTok), 401, api.CodeInvalidToken},
		{"fail/truncated-one-char", alice, bearer(tok[:len(tok)-1]), 401, api.CodeInvalidToken},
		{"fail/truncated-half", alice, bearer(tok[:len(tok)/2]), 401, api.CodeInvalidToken},
		{"fail/truncated-no-signature", alice, bearer(parts[0] + "." + parts[1]), 401, api.CodeInvalidToken},
		{"fail/signature-of-another-token", alice, bearer(parts[0] + "." + parts[1] + "." + strings.Split(tok2, ".")[2]), 401, api.CodeInvalidToken},
		{"fail/over-4KiB", alice, bearer(tok + megabyte[:5000]), 401, api.CodeInvalidToken},
		{"fail/one-megabyte", alice, bearer(megabyte), 431, api.CodeHeadersTooLarge},
		{"fail/one-megabyte-after-genuine", alice, bearer(tok + megabyte), 431, api.CodeHeadersTooLarge},
		{"fail/many-small-headers", alice, manyHeaders(tok, 400), 431, api.CodeHeadersTooLarge},
		{"fail/two-authorization-headers", alice, append(bearer(tok), bearer(tok)...), 400, api.CodeBadRequest},
		{"fail/two-authorization-headers-one-empty", alice, append(bearer(tok), "Authorization", ""), 400, api.CodeBadRequest},
		{"fail/iss-number", alice, bearer(es(oursHdr, with(claims, "iss", 1))), 401, api.CodeInvalidToken},
		{"fail/aud-array", alice, bearer(es(oursHdr, with(claims, "aud", []string{serverID}))), 401, api.CodeInvalidToken},
		{"fail/sub-number", alice, bearer(es(oursHdr, with(claims, "sub", 42))), 401, api.CodeInvalidToken},
		{"fail/sub-bob", alice, bearer(es(oursHdr, with(claims, "sub", bobID))), 401, api.CodeInvalidToken},
		{"fail/exp-string", alice, bearer(es(oursHdr, with(claims, "exp", "never"))), 401, api.CodeInvalidToken},
		{"fail/exp-far-future", alice, bearer(es(oursHdr, with(claims, "exp", 1<<40))), 401, api.CodeInvalidToken},
		{"fail/cnf-string", alice, bearer(es(oursHdr, with(claims, "cnf", "x"))), 401, api.CodeInvalidToken},
		{"fail/cnf-missing", alice, bearer(es(oursHdr, with(claims, "cnf", nil))), 401, api.CodeInvalidToken},
		{"fail/cnf-wrong", alice, bearer(es(oursHdr, with(claims, "cnf", map[string]any{"x5t#S256": svid.Fingerprint(e.ca.Issue(t, aliceID).Certificates[0])}))), 401, api.CodeInvalidToken},
		{"fail/genuine-over-new-leaf", aliceNewLeaf, bearer(tok), 401, api.CodeCertificateRotated},
		{"fail/genuine-from-bob", bob, bearer(tok), 401, api.CodeInvalidToken},
		{"fail/query-string", alice, nil, 401, api.CodeMissingToken}, // path below carries it
		{"fail/cookie", alice, []string{"Cookie", "token=" + tok}, 401, api.CodeMissingToken},
		{"fail/no-scheme", alice, []string{"Authorization", tok}, 401, api.CodeMissingToken},
		{"fail/token-with-space", alice, []string{"Authorization", "Bearer " + tok + " x"}, 401, api.CodeInvalidToken},
	}
	for name, key := range hsKeys {
		cases = append(cases, tcase{"fail/hs256-keyed-with-our-public-key-" + name, alice,
			bearer(signHS256(t, key, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, claims)), 401, api.CodeInvalidToken})
	}
	for _, c := range cases {
		for i := 0; i+1 < len(c.headers); i += 2 {
			if v, ok := strings.CutPrefix(c.headers[i+1], "Bearer "); ok {
				e.remember(v)
			}
		}
	}
	e.remember(foreignTok)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := api.PathSessionsSelf
			if tc.name == "fail/query-string" {
				path += "?access_token=" + tok
			}
			r, err := e.do(tc.client, http.MethodGet, path, nil, tc.headers...)
			require.NoError(t, err, "no HTTP answer (a panic closes the connection): %v", err)
			require.False(t, r.status != tc.status || r.code() != tc.code, "got %d %q, want %d %q: %s", r.status, r.code(), tc.status, tc.code, r.body)
			require.False(t, r.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") != api.WWWAuthenticate(tc.code), "WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			require.NotContains(t, string(r.body), tok, "the answer echoes the token")
		})
	}
	// The same forgeries sent to introspection are inactive, never an error.
	gw := e.client(e.ca.Issue(t, introID), 0)
	fp := svid.Fingerprint(aliceSVID.Certificates[0])
	for _, forged := range []string{foreignTok, es(oursHdr, claims), tok[:len(tok)-1], parts[0] + "." + parts[1] + "."} {
		body := fmt.Sprintf(`{"token":%q,"cnf":{"x5t#S256":%q}}`, forged, fp)
		r, err := e.do(gw, http.MethodPost, api.PathIntrospect, strings.NewReader(body))
		require.False(t, err != nil || r.status != 200 || strings.TrimSpace(string(r.body)) != `{"active":false}`, "introspect forged: %v %d %s", err, r.status, r.body)
	}
	// And the genuine token still works: nothing above disturbed the session.
	r, err := e.do(alice, http.MethodGet, api.PathSessionsSelf, nil, bearer(tok)...)
	require.NoError(t, err, "the genuine token after the attacks")
	require.Equal(t, http.StatusOK, r.status, "the genuine token after the attacks")
}

func mustJWK(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	b, err := jose.JSONWebKey{Key: pub}.MarshalJSON()
	require.NoError(t, err)
	return b
}

// TestAdversarialHandshakes: a peer without a valid X.509 SVID of a trusted
// trust domain, or speaking TLS 1.2, never gets past the handshake: no HTTP
// answer at all, and the handler (which would log a security event) never
// runs.
// TestHeaderBoundToTheByte: a request whose line and headers come to
// MaxHeaderBytes is served; one byte more is 431 headers_too_large and the
// connection is closed, on a fresh connection and on a kept-alive one (where
// net/http alone would accept up to 8 KiB more).
func TestHeaderBoundToTheByte(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.as(aliceID)
	tok, _ := alice.login()
	sized := func(n int) string {
		head := "GET /v1/sessions/self HTTP/1.1\r\nHost: tetherd\r\nAuthorization: Bearer " + tok + "\r\nX-Pad: "
		const tail = "\r\n\r\n"
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	require.Len(t, sized(server.MaxHeaderBytes), server.MaxHeaderBytes)

	c, err := e.dialAPI(t, alice.svid)
	require.NoError(t, err)
	resp, _, err := roundTrip(t, c, sized(server.MaxHeaderBytes))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "exactly MaxHeaderBytes is served")
	resp, body, err := roundTrip(t, c, sized(server.MaxHeaderBytes+1))
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, "one byte more, on a kept-alive connection: %s", body)
	require.Contains(t, string(body), `"code":"headers_too_large"`)
	require.True(t, closedByServer(c, 10*time.Second), "the connection is closed after the 431")

	for _, n := range []int{server.MaxHeaderBytes + 1, server.MaxHeaderBytes + 3<<10} {
		c, err := e.dialAPI(t, alice.svid)
		require.NoError(t, err)
		resp, body, err := roundTrip(t, c, sized(n))
		require.NoError(t, err)
		require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, "%d bytes on a fresh connection: %s", n, body)
		require.Contains(t, string(body), `"code":"headers_too_large"`)
	}
}

func TestAdversarialHandshakes(t *testing.T) {
	e := newEnv(t, envOpts{})
	evil := testpki.NewCA(t, "evil.org")
	now := time.Now()
	for _, tc := range []struct {
		name   string
		svid   *x509svid.SVID
		tlsMax uint16
	}{
		{"fail/expired-leaf", e.ca.Issue(t, aliceID, testpki.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour))), 0},
		{"fail/not-yet-valid-leaf", e.ca.Issue(t, aliceID, testpki.WithValidity(now.Add(time.Hour), now.Add(2*time.Hour))), 0},
		{"fail/two-spiffe-ids", e.ca.Issue(t, aliceID, testpki.WithURIs(aliceID, bobID)), 0},
		{"fail/no-spiffe-id", e.ca.Issue(t, aliceID, testpki.WithURIs()), 0},
		{"fail/https-uri-not-spiffe", e.ca.Issue(t, aliceID, testpki.WithURIs("https://example.org/admin/alice")), 0},
		{"fail/ca-certificate-as-leaf", e.ca.Issue(t, aliceID, testpki.AsCA()), 0},
		{"fail/foreign-trust-domain", evil.Issue(t, "spiffe://evil.org/admin/alice"), 0},
		{"fail/foreign-ca-claims-our-trust-domain", evil.Issue(t, aliceID), 0},
		{"fail/tls-1.2-client", e.ca.Issue(t, aliceID), tls.VersionTLS12},
		{"fail/no-client-certificate", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.log.String()
			var c *http.Client
			if tc.svid == nil {
				cfg := tlsconfig.TLSClientConfig(e.bundles, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
				cfg.MinVersion = tls.VersionTLS13
				tr := &http.Transport{TLSClientConfig: cfg}
				t.Cleanup(tr.CloseIdleConnections)
				c = &http.Client{Transport: tr, Timeout: 20 * time.Second}
			} else {
				c = e.client(tc.svid, tc.tlsMax)
			}
			// A login, the call that needs no token: refused at the handshake.
			r, err := e.do(c, http.MethodPost, api.PathSessions, nil)
			require.Error(t, err, "got an HTTP answer %d %s; want the handshake refused", r.status, r.body)
			after := strings.TrimPrefix(e.log.String(), before)
			for _, ev := range []string{"session.created", "login.denied", "session.rejected"} {
				require.NotContains(t, after, ev, "the handler ran (%s logged)", ev)
			}
		})
	}
	require.Zero(t, e.mgr.Len(), "sessions exist after refused handshakes")
	require.Contains(t, e.log.String(), "connection.handshake_failed", "the refused handshakes were not logged (debug connection.handshake_failed)")
}

// TestSlowClients: the server's header, read and handshake timeouts close
// connections that send too slowly, whatever they send. The timeouts are
// shortened here through the *http.Server that NewHTTPServer returns and the
// Listener's ConnLimits.
func TestSlowClients(t *testing.T) {
	const (
		headerTimeout = 300 * time.Millisecond
		readTimeout   = 800 * time.Millisecond
		bound         = 5 * time.Second // far above the timeouts, far below a hang
	)
	require.False(t, server.ReadHeaderTimeout <= 0 || server.ReadTimeout <= 0 || server.MaxHeaderBytes <= 0, "the production server has no header/read timeout or header limit")
	e := newEnv(t, envOpts{conns: server.ConnLimits{HandshakeTimeout: headerTimeout}, tweakSrv: func(s *http.Server) {
		require.True(t, s.ReadHeaderTimeout == server.ReadHeaderTimeout && s.ReadTimeout == server.ReadTimeout, "NewHTTPServer does not set the package's timeouts")
		s.ReadHeaderTimeout, s.ReadTimeout = headerTimeout, readTimeout
	}})
	aliceSVID := e.ca.Issue(t, aliceID)
	gwSVID := e.ca.Issue(t, introID)
	dialTLS := func(t *testing.T, s *x509svid.SVID) *tls.Conn {
		t.Helper()
		src := &svid.StaticSource{SVID: s, Bundles: e.bundles}
		cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
		cfg.MinVersion = tls.VersionTLS13
		conn, err := tls.Dial("tcp", e.addr, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	// closedWithin reads until the server closes the connection and returns
	// what it sent; the test fails if that takes longer than bound.
	closedWithin := func(t *testing.T, conn net.Conn, start time.Time) string {
		t.Helper()
		_ = conn.SetReadDeadline(start.Add(bound))
		b, err := io.ReadAll(conn)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server held the connection for more than %s", bound)
		return string(b)
	}

	t.Run("fail/no-client-hello", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		defer conn.Close()
		start := time.Now()
		closedWithin(t, conn, start)
		require.GreaterOrEqual(t, time.Since(start), headerTimeout/2, "closed before the timeout")
	})
	t.Run("fail/headers-never-finished", func(t *testing.T) {
		conn := dialTLS(t, aliceSVID)
		start := time.Now()
		_, err := io.WriteString(conn, "GET /v1/sessions/self HTTP/1.1\r\nHost: tetherd\r\n")
		require.NoError(t, err)
		got := closedWithin(t, conn, start)
		require.True(t, netHTTPRefusal(got), "answered %q", got)
	})
	t.Run("fail/headers-dripped", func(t *testing.T) {
		// One byte every 50ms keeps the connection busy, but the header
		// deadline is absolute: it is cut at headerTimeout all the same.
		conn := dialTLS(t, aliceSVID)
		start := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			msg := "GET /v1/sessions/self HTTP/1.1\r\nHost: tetherd\r\nX-Slow: " + strings.Repeat("a", 1000)
			for i := 0; i < len(msg); i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := conn.Write([]byte{msg[i]}); err != nil {
					return
				}
			}
		}()
		got := closedWithin(t, conn, start)
		close(stop)
		wg.Wait()
		require.True(t, netHTTPRefusal(got), "answered %q", got)
		require.LessOrEqual(t, time.Since(start), headerTimeout+2*time.Second, "a dripping client held the connection too long")
	})
	t.Run("fail/body-never-finished", func(t *testing.T) {
		// An introspector announces 100 bytes and sends 10: the read
		// deadline ends it with a 400 (the body is not a JSON object) or a
		// closed connection, never a handler blocked forever.
		conn := dialTLS(t, gwSVID)
		start := time.Now()
		req := "POST /v1/introspect HTTP/1.1\r\nHost: tetherd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"token\":"
		_, err := io.WriteString(conn, req)
		require.NoError(t, err)
		got := closedWithin(t, conn, start)
		if got != "" {
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			require.NoError(t, err, "not an HTTP answer: %q", got)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			require.False(t, resp.StatusCode != http.StatusBadRequest || (reply{body: b}).code() != api.CodeBadRequest, "answered %d %s", resp.StatusCode, b)
		}
		require.GreaterOrEqual(t, time.Since(start), readTimeout/2, "ended before the read timeout")
	})
	t.Run("fail/http2-not-offered", func(t *testing.T) {
		// Go's HTTP/2 server does not apply the header and read timeouts to
		// a header block in progress (half a HEADERS frame holds the
		// connection until IdleTimeout), so the API speaks HTTP/1.1 only.
		for _, protos := range [][]string{{"h2", "http/1.1"}, {"h2"}} {
			src := &svid.StaticSource{SVID: aliceSVID, Bundles: e.bundles}
			cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
			cfg.MinVersion, cfg.NextProtos = tls.VersionTLS13, protos
			conn, err := tls.Dial("tcp", e.addr, cfg)
			if err != nil {
				continue // no protocol in common: refused, as wanted
			}
			got := conn.ConnectionState().NegotiatedProtocol
			_ = conn.Close()
			require.False(t, got == "h2", "client offering %v got HTTP/2", protos)
		}
		c := e.client(aliceSVID, 0)
		c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
		tok, _ := e.login(c)
		req, err := http.NewRequest(http.MethodGet, "https://"+e.addr+api.PathSessionsSelf, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.False(t, resp.ProtoMajor != 1 || resp.StatusCode != http.StatusOK, "an HTTP/2-capable client got %s %d", resp.Proto, resp.StatusCode)
	})
	t.Run("ok/normal-client-unaffected", func(t *testing.T) {
		c := e.client(aliceSVID, 0)
		tok, _ := e.login(c)
		r, err := e.do(c, http.MethodGet, api.PathSessionsSelf, nil, "Authorization", "Bearer "+tok)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.status)
	})
}

// netHTTPRefusal reports whether a timed-out request got nothing, or only
// net/http's own bare 4xx (it answers "400 Bad Request" in plain text when
// the deadline cuts a header line in two, before any handler of ours runs).
func netHTTPRefusal(got string) bool {
	return got == "" || strings.HasPrefix(got, "HTTP/1.1 4") || strings.HasPrefix(got, "HTTP/1.0 4")
}

// TestLoginHammering: an admin identity, or many, logging in as fast as they
// can cannot grow the store past the caps: exactly the caps succeed, the rest
// are 429 session_limit, and the store's size and estimated bytes stay at
// the caps. Non-admins never reach the store.
func TestLoginHammering(t *testing.T) {
	const perIdentity, total = 16, 40
	e := newEnv(t, envOpts{session: session.Config{MaxSessions: total, MaxSessionsPerIdentity: perIdentity, SweepInterval: time.Hour}})
	hammer := func(c *http.Client, goroutines, each int) (created, limited int) {
		var ok, lim atomic.Int64
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					r, err := e.do(c, http.MethodPost, api.PathSessions, nil)
					switch {
					case err != nil:
						t.Errorf("login: %v", err)
					case r.status == http.StatusCreated:
						var lr api.LoginResponse
						_ = json.Unmarshal(r.body, &lr)
						e.remember(lr.Token)
						ok.Add(1)
					case r.status == http.StatusTooManyRequests && r.code() == api.CodeSessionLimit:
						lim.Add(1)
					default:
						t.Errorf("login: %d %s", r.status, r.body)
					}
				}
			}()
		}
		wg.Wait()
		return int(ok.Load()), int(lim.Load())
	}

	alice := e.client(e.ca.Issue(t, aliceID), 0)
	created, limited := hammer(alice, 8, 25)
	require.Equal(t, perIdentity, created, "one admin, 200 logins: created")
	require.Equal(t, 200-perIdentity, limited, "one admin, 200 logins: limited")
	require.Equal(t, perIdentity, e.mgr.Len(), "one admin, 200 logins: live")

	// Many admin identities: the global cap.
	var others []*http.Client
	for i := range 6 {
		others = append(others, e.client(e.ca.Issue(t, fmt.Sprintf("spiffe://example.org/admin/user%d", i)), 0))
	}
	created = 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := hammer(c, 2, 10)
			mu.Lock()
			created += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.False(t, created != total-perIdentity || e.mgr.Len() != total, "many admins: %d more created, %d live; want %d and %d", created, e.mgr.Len(), total-perIdentity, total)

	// Non-admins: 403, and the store does not move.
	web := e.client(e.ca.Issue(t, "spiffe://example.org/workload/web"), 0)
	for range 50 {
		r, err := e.do(web, http.MethodPost, api.PathSessions, nil)
		require.False(t, err != nil || r.status != http.StatusForbidden || r.code() != api.CodeNotAdmin, "non-admin login: %v %d %s", err, r.status, r.body)
	}
	require.Equal(t, total, e.mgr.Len(), "live after non-admin logins")
	if s, ok := e.mgr.Store().(interface{ EstimatedBytes() int64 }); ok {
		per := s.EstimatedBytes() / int64(total)
		require.False(t, per <= 0 || per > 4096, "estimated %d bytes per session", per)
		t.Logf("store at the cap: %d sessions, ~%d bytes estimated", total, s.EstimatedBytes())
	}
}

// TestLoginRateLimited: beyond the burst, one identity's logins are 429
// rate_limited with a Retry-After in whole seconds, no session is created
// for them, and other identities are not affected.
func TestLoginRateLimited(t *testing.T) {
	// One login per 10 s: no new one becomes due while the test runs.
	e := newEnv(t, envOpts{session: session.Config{LoginRate: 0.1, LoginBurst: 3, SweepInterval: time.Hour}})
	alice := e.client(e.ca.Issue(t, aliceID), 0)
	for range 3 {
		e.login(alice)
	}
	for range 20 {
		r, err := e.do(alice, http.MethodPost, api.PathSessions, nil)
		require.False(t, err != nil || r.status != http.StatusTooManyRequests || r.code() != api.CodeRateLimited, "past the burst: %v %d %s", err, r.status, r.body)
		secs, err := strconv.Atoi(r.header.Get("Retry-After"))
		require.False(t, err != nil || secs < 1 || secs > 10, "Retry-After %q, want 1 to 10 seconds at 0.1 logins/s", r.header.Get("Retry-After"))
	}
	require.Equal(t, 3, e.mgr.Len(), "sessions after rate-limited logins")
	bob := e.client(e.ca.Issue(t, bobID), 0)
	e.login(bob)
	require.Contains(t, e.log.String(), `"reason":"login_rate"`, "the refusals were not logged as login.denied with reason login_rate")
}

// manyHeaders is a genuine bearer header plus n headers of 40 bytes each.
func manyHeaders(tok string, n int) []string {
	h := []string{"Authorization", "Bearer " + tok}
	for i := range n {
		h = append(h, fmt.Sprintf("X-Pad-%04d", i), strings.Repeat("p", 28))
	}
	return h
}
