package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
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

type env struct {
	t      *testing.T
	ca     *testpki.CA
	url    string
	log    *testutil.Buffer
	clock  *testutil.Clock
	mgr    *session.Manager
	tokens []string // every token handed out, for the log hygiene check
}

type envOpts struct {
	perIdentity int
	loginRate   rate.Limit
	loginBurst  int
}

const (
	aliceID = "spiffe://example.org/admin/alice"
	bobID   = "spiffe://example.org/admin/bob"
	webID   = "spiffe://example.org/workload/web"
	introID = "spiffe://example.org/svc/gateway"
)

// newEnv serves the API over real TLS on a loopback listener.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, ca: testpki.NewCA(t, "example.org"), log: &testutil.Buffer{}, clock: testutil.NewClock(time.Now())}
	logger := slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	serverSVID := e.ca.Issue(t, "spiffe://example.org/tetherd")
	if o.loginRate == 0 {
		o.loginRate = rate.Inf
	}
	var err error
	e.mgr, err = session.NewManager(session.Config{
		Issuer: serverSVID.ID, TTL: time.Hour, IdleTimeout: 10 * time.Minute,
		MaxSessionsPerIdentity: o.perIdentity, LoginRate: o.loginRate, LoginBurst: o.loginBurst,
		Logger: logger, Now: e.clock.Now,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.mgr.Close() })
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(t, err)
	intro, err := auth.ParsePolicy([]string{introID})
	require.NoError(t, err)
	src := &svid.StaticSource{SVID: serverSVID, Bundles: x509bundle.NewSet(e.ca.Bundle())}
	h := server.NewHandler(server.Config{Sessions: e.mgr, Bundles: src, Admins: admins, Introspectors: intro, Logger: logger, Now: e.clock.Now})
	tlsCfg := auth.ServerTLSConfig(src, src)
	srv := server.NewHTTPServer(h, tlsCfg, logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(server.NewListener(ln, tlsCfg, server.ConnLimits{}, logger, nil)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	e.url = "https://" + ln.Addr().String()
	t.Cleanup(e.checkLogHygiene)
	return e
}

// checkLogHygiene: no token, nor any recognisable part of one, is ever logged.
func (e *env) checkLogHygiene() {
	log := e.log.String()
	require.NotEmpty(e.t, log)
	for _, tok := range e.tokens {
		parts := strings.Split(tok, ".")
		require.NotContains(e.t, log, tok)
		require.NotContains(e.t, log, parts[1], "the token's payload")
		require.NotContains(e.t, log, parts[2], "the token's signature")
		require.NotContains(e.t, log, parts[2][:16], "a prefix of the signature")
		require.NotContains(e.t, log, tok[:16], "a prefix of the token")
		require.NotContains(e.t, log, parts[1][:16], "a prefix of the payload")
	}
}

// identity is one TLS client identity.
type identity struct {
	e    *env
	svid *x509svid.SVID
	c    *http.Client
}

func (e *env) as(id string) *identity {
	return e.asSVID(e.ca.Issue(e.t, id))
}

func (e *env) asSVID(s *x509svid.SVID) *identity {
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		Certificates:       []tls.Certificate{testpki.TLSCertificate(s)},
		InsecureSkipVerify: true, //nolint:gosec // SVIDs have no DNS SAN; this test exercises the server
		MinVersion:         tls.VersionTLS13,
	}}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &identity{e: e, svid: s, c: &http.Client{Transport: tr}}
}

func (i *identity) fp() string { return svid.Fingerprint(i.svid.Certificates[0]) }

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) code() api.Code {
	var er api.ErrorResponse
	if json.Unmarshal(r.body, &er) != nil || er.Error == nil {
		return ""
	}
	return er.Error.Code
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

func (i *identity) do(method, path, token string, body io.Reader, hdr ...string) reply {
	t := i.e.t
	t.Helper()
	req, err := http.NewRequest(method, i.e.url+path, body)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k := 0; k+1 < len(hdr); k += 2 {
		req.Header.Add(hdr[k], hdr[k+1])
	}
	resp, err := i.c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode >= 400 {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.NotEmpty(t, reply{body: b}.code(), "every error has a code: %s", b)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (i *identity) login() (string, api.Session) {
	t := i.e.t
	t.Helper()
	r := i.do(http.MethodPost, api.PathSessions, "", nil)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var lr api.LoginResponse
	r.decode(t, &lr)
	require.NotEmpty(t, lr.Token)
	i.e.tokens = append(i.e.tokens, lr.Token)
	return lr.Token, lr.Session
}

func TestAPIFlow(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob := e.as(aliceID), e.as(bobID)

	tok, s := alice.login()
	require.Equal(t, aliceID, s.SPIFFEID)
	require.Equal(t, alice.fp(), s.CNF.X5TS256)
	require.Len(t, s.SessionID, 26)
	require.Equal(t, s.CreatedAt, s.LastUsedAt)
	require.Equal(t, s.CreatedAt.Add(time.Hour).Truncate(time.Second), s.ExpiresAt)
	require.Equal(t, s.LastUsedAt.Add(10*time.Minute), s.IdleExpiresAt)

	// GET self: a use moves last_used_at, never the absolute end.
	e.clock.Add(time.Minute)
	r := alice.do(http.MethodGet, api.PathSessionsSelf, tok, nil)
	require.Equal(t, http.StatusOK, r.status)
	var self api.SessionResponse
	r.decode(t, &self)
	require.Equal(t, s.SessionID, self.Session.SessionID)
	require.Equal(t, e.clock.Now().UTC(), self.Session.LastUsedAt.UTC())
	require.Equal(t, s.ExpiresAt, self.Session.ExpiresAt)

	// List, all and filtered, oldest first; never a token.
	bobTok, bs := bob.login()
	r = alice.do(http.MethodGet, api.PathSessions, tok, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, string(r.body), "token")
	var list api.SessionsResponse
	r.decode(t, &list)
	require.Len(t, list.Sessions, 2)
	require.Equal(t, s.SessionID, list.Sessions[0].SessionID)
	require.Equal(t, bs.SessionID, list.Sessions[1].SessionID)
	r = alice.do(http.MethodGet, api.PathSessions+"?spiffe_id="+bobID, tok, nil)
	r.decode(t, &list)
	require.Len(t, list.Sessions, 1)
	require.Equal(t, bs.SessionID, list.Sessions[0].SessionID)

	// Revoke one by ID: bob's token is dead.
	r = alice.do(http.MethodDelete, api.PathSessions+"/"+bs.SessionID, tok, nil)
	require.Equal(t, http.StatusNoContent, r.status)
	r = bob.do(http.MethodGet, api.PathSessionsSelf, bobTok, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, api.CodeSessionEnded, r.code())
	r = alice.do(http.MethodDelete, api.PathSessions+"/"+bs.SessionID, tok, nil)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, api.CodeNotFound, r.code())

	// Revoke per identity.
	bob.login()
	bob.login()
	r = alice.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+bobID, tok, nil)
	require.Equal(t, http.StatusOK, r.status)
	var rv api.RevokeResponse
	r.decode(t, &rv)
	require.Equal(t, 2, rv.Revoked)

	// Logout.
	r = alice.do(http.MethodDelete, api.PathSessionsSelf, tok, nil)
	require.Equal(t, http.StatusNoContent, r.status)
	r = alice.do(http.MethodGet, api.PathSessionsSelf, tok, nil)
	require.Equal(t, api.CodeSessionEnded, r.code())
	require.Zero(t, e.mgr.Len())
}

func TestAPIRebind(t *testing.T) {
	e := newEnv(t, envOpts{})
	old := e.as(aliceID)
	tok, s := old.login()
	rotated := e.as(aliceID) // same SPIFFE ID, new leaf and key: the SVID rotated

	r := rotated.do(http.MethodGet, api.PathSessionsSelf, tok, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, api.CodeCertificateRotated, r.code())
	require.Equal(t, `Bearer realm="tether", error="invalid_token"`, r.header.Get("WWW-Authenticate"))

	r = old.do(http.MethodPost, api.PathRebind, tok, nil)
	require.Equal(t, http.StatusBadRequest, r.status, "rebind over the bound leaf")

	bob := e.as(bobID)
	r = bob.do(http.MethodPost, api.PathRebind, tok, nil)
	require.Equal(t, api.CodeInvalidToken, r.code(), "another identity cannot rebind")

	r = rotated.do(http.MethodPost, api.PathRebind, tok, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var lr api.LoginResponse
	r.decode(t, &lr)
	e.tokens = append(e.tokens, lr.Token)
	require.Equal(t, s.SessionID, lr.Session.SessionID)
	require.Equal(t, s.ExpiresAt, lr.Session.ExpiresAt)
	require.Equal(t, rotated.fp(), lr.Session.CNF.X5TS256)

	require.Equal(t, http.StatusOK, rotated.do(http.MethodGet, api.PathSessionsSelf, lr.Token, nil).status)
	require.Equal(t, api.CodeCertificateRotated, old.do(http.MethodGet, api.PathSessionsSelf, lr.Token, nil).code(), "the old leaf is dead for it")
	require.Equal(t, api.CodeSessionEnded, rotated.do(http.MethodGet, api.PathSessionsSelf, tok, nil).code(), "the old token is dead")

	// The old leaf cannot take the session back with the new token.
	r = old.do(http.MethodPost, api.PathRebind, lr.Token, nil)
	require.Equal(t, http.StatusBadRequest, r.status, "rebind to an older leaf: %s", r.body)
	require.Equal(t, http.StatusOK, rotated.do(http.MethodGet, api.PathSessionsSelf, lr.Token, nil).status, "the new leaf keeps the session")
}

// TestFailedRequestsDoNotTouch: only a 2xx made with a token moves the
// session's last use; a 400 or 404 made with the same valid token does not
// keep the session alive.
func TestFailedRequestsDoNotTouch(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.as(aliceID)
	tok, s := alice.login()
	e.clock.Add(5 * time.Minute)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, api.PathSessions + "?spiffe_id=not-an-id", http.StatusBadRequest},
		{http.MethodDelete, api.PathSessions, http.StatusBadRequest},
		{http.MethodDelete, api.PathSessions + "/no-such-session", http.StatusNotFound},
	} {
		r := alice.do(c.method, c.path, tok, nil)
		require.Equal(t, c.status, r.status, "%s %s: %s", c.method, c.path, r.body)
	}
	info, ok := e.mgr.Get(s.SessionID)
	require.True(t, ok)
	require.True(t, info.LastUsedAt.Equal(s.LastUsedAt), "a failed request moved last_used_at from %s to %s", s.LastUsedAt, info.LastUsedAt)

	r := alice.do(http.MethodGet, api.PathSessions, tok, nil)
	require.Equal(t, http.StatusOK, r.status)
	info, _ = e.mgr.Get(s.SessionID)
	require.True(t, info.LastUsedAt.Equal(e.clock.Now().UTC()), "a 2xx moves last_used_at")
}

func TestAPIIntrospect(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, gw := e.as(aliceID), e.as(introID)
	tok, s := alice.login()
	body := func(token, fp string) io.Reader {
		b, err := json.Marshal(api.IntrospectRequest{Token: token, CNF: api.CNF{X5TS256: fp}})
		require.NoError(t, err)
		return bytes.NewReader(b)
	}
	r := gw.do(http.MethodPost, api.PathIntrospect, "", body(tok, alice.fp()))
	require.Equal(t, http.StatusOK, r.status)
	var ir api.IntrospectResponse
	r.decode(t, &ir)
	require.True(t, ir.Active)
	require.Equal(t, s.SessionID, ir.Session.SessionID)
	require.Equal(t, aliceID, ir.Session.SPIFFEID)

	for name, b := range map[string]io.Reader{
		"other-leaf": body(tok, e.as(aliceID).fp()),
		"garbage":    body("abc.def.ghi", alice.fp()),
	} {
		r := gw.do(http.MethodPost, api.PathIntrospect, "", b)
		require.Equal(t, http.StatusOK, r.status, name)
		require.JSONEq(t, `{"active":false}`, string(r.body), name)
	}
}

// TestAPIErrors walks every row of the contract's error table.
func TestAPIErrors(t *testing.T) {
	e := newEnv(t, envOpts{perIdentity: 2})
	alice, bob, web, gw := e.as(aliceID), e.as(bobID), e.as(webID), e.as(introID)
	tok, _ := alice.login()
	bobTok, _ := bob.login()
	endedTok, es := bob.login()
	require.NoError(t, e.mgr.Revoke(context.Background(), es.SessionID))
	bob.login() // bob is at his cap of 2 again

	big := bytes.Repeat([]byte("a"), api.MaxBodyBytes+1)
	for _, tc := range []struct {
		name   string
		as     *identity
		method string
		path   string
		token  string
		body   io.Reader
		hdr    []string
		status int
		code   api.Code
	}{
		{"bad_request/revoke-without-spiffe_id", alice, "DELETE", api.PathSessions, tok, nil, nil, 400, api.CodeBadRequest},
		{"bad_request/bad-spiffe_id", alice, "GET", api.PathSessions + "?spiffe_id=not-an-id", tok, nil, nil, 400, api.CodeBadRequest},
		{"bad_request/two-spiffe_id", alice, "GET", api.PathSessions + "?spiffe_id=" + aliceID + "&spiffe_id=" + bobID, tok, nil, nil, 400, api.CodeBadRequest},
		{"bad_request/malformed-json", gw, "POST", api.PathIntrospect, "", strings.NewReader(`{"token":`), nil, 400, api.CodeBadRequest},
		{"bad_request/wrong-json-type", gw, "POST", api.PathIntrospect, "", strings.NewReader(`{"token":1}`), nil, 400, api.CodeBadRequest},
		{"bad_request/missing-cnf", gw, "POST", api.PathIntrospect, "", strings.NewReader(`{"token":"a.b.c"}`), nil, 400, api.CodeBadRequest},
		{"bad_request/trailing-data", gw, "POST", api.PathIntrospect, "", strings.NewReader(`{"token":"a","cnf":{"x5t#S256":"b"}} {}`), nil, 400, api.CodeBadRequest},
		{"bad_request/two-authorization-headers", alice, "GET", api.PathSessionsSelf, tok, nil, []string{"Authorization", "Bearer " + tok}, 400, api.CodeBadRequest},
		{"missing_token/none", alice, "GET", api.PathSessionsSelf, "", nil, nil, 401, api.CodeMissingToken},
		{"missing_token/basic-scheme", alice, "GET", api.PathSessionsSelf, "", nil, []string{"Authorization", "Basic YTpi"}, 401, api.CodeMissingToken},
		{"missing_token/query-string-ignored", alice, "GET", api.PathSessionsSelf + "?access_token=" + tok, "", nil, nil, 401, api.CodeMissingToken},
		{"missing_token/cookie-ignored", alice, "GET", api.PathSessionsSelf, "", nil, []string{"Cookie", "token=" + tok}, 401, api.CodeMissingToken},
		{"invalid_token/garbage", alice, "GET", api.PathSessionsSelf, "x.y.z", nil, nil, 401, api.CodeInvalidToken},
		{"invalid_token/bad-characters", alice, "GET", api.PathSessionsSelf, "a b", nil, nil, 401, api.CodeInvalidToken},
		{"invalid_token/another-identitys-token", alice, "GET", api.PathSessionsSelf, bobTok, nil, nil, 401, api.CodeInvalidToken},
		{"invalid_token/non-admin-with-admin-token", web, "GET", api.PathSessionsSelf, tok, nil, nil, 401, api.CodeInvalidToken},
		{"invalid_token/ended-session-of-another", alice, "GET", api.PathSessionsSelf, endedTok, nil, nil, 401, api.CodeInvalidToken},
		{"session_ended/revoked", bob, "GET", api.PathSessionsSelf, endedTok, nil, nil, 401, api.CodeSessionEnded},
		{"certificate_rotated/new-leaf", e.as(aliceID), "GET", api.PathSessions, tok, nil, nil, 401, api.CodeCertificateRotated},
		{"not_admin/login", web, "POST", api.PathSessions, "", nil, nil, 403, api.CodeNotAdmin},
		{"forbidden/introspect-by-admin", alice, "POST", api.PathIntrospect, "", strings.NewReader(`{}`), nil, 403, api.CodeForbidden},
		{"forbidden/before-body", web, "POST", api.PathIntrospect, "", bytes.NewReader(big), nil, 403, api.CodeForbidden},
		{"not_found/path", alice, "GET", "/v1/nope", tok, nil, nil, 404, api.CodeNotFound},
		{"not_found/root", alice, "GET", "/", "", nil, nil, 404, api.CodeNotFound},
		{"not_found/session", alice, "DELETE", api.PathSessions + "/nosuchsession", tok, nil, nil, 404, api.CodeNotFound},
		{"method_not_allowed/put-sessions", alice, "PUT", api.PathSessions, tok, nil, nil, 405, api.CodeMethodNotAllowed},
		{"method_not_allowed/get-rebind", alice, "GET", api.PathRebind, tok, nil, nil, 405, api.CodeMethodNotAllowed},
		{"payload_too_large/introspect", gw, "POST", api.PathIntrospect, "", bytes.NewReader(big), nil, 413, api.CodePayloadTooLarge},
		{"session_limit/per-identity", bob, "POST", api.PathSessions, "", nil, nil, 429, api.CodeSessionLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.as.do(tc.method, tc.path, tc.token, tc.body, tc.hdr...)
			require.Equal(t, tc.status, r.status, string(r.body))
			require.Equal(t, tc.code, r.code())
			require.NotContains(t, string(r.body), "goroutine", "no stack trace")
			switch {
			case tc.code == api.CodeMissingToken:
				require.Equal(t, `Bearer realm="tether", error="invalid_request"`, r.header.Get("WWW-Authenticate"))
			case tc.status == 401:
				require.Equal(t, `Bearer realm="tether", error="invalid_token"`, r.header.Get("WWW-Authenticate"))
			case tc.status == 405:
				require.NotEmpty(t, r.header.Get("Allow"))
			}
		})
	}
	// The 403 before the body: the introspect body was never needed to refuse.
	require.Contains(t, e.log.String(), `"introspect.denied"`)
	require.Contains(t, e.log.String(), `"login.denied"`)
}

func TestAPIRateLimited(t *testing.T) {
	e := newEnv(t, envOpts{loginRate: 0.001, loginBurst: 2})
	alice := e.as(aliceID)
	alice.login()
	alice.login()
	r := alice.do(http.MethodPost, api.PathSessions, "", nil)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, api.CodeRateLimited, r.code())
	require.NotEmpty(t, r.header.Get("Retry-After"))
	bob := e.as(bobID)
	bob.login() // the limit is per SPIFFE ID
}

// TestSecurityEventLog checks the events of a whole flow and that every
// event carries what an operator needs, and never a token.
func TestSecurityEventLog(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.as(aliceID)
	tok, s := alice.login()
	rotated := e.as(aliceID)
	rotated.do(http.MethodGet, api.PathSessionsSelf, tok, nil)
	r := rotated.do(http.MethodPost, api.PathRebind, tok, nil)
	var lr api.LoginResponse
	r.decode(t, &lr)
	e.tokens = append(e.tokens, lr.Token)
	rotated.do(http.MethodDelete, api.PathSessionsSelf, lr.Token, nil)
	e.as(webID).do(http.MethodPost, api.PathSessions, "", nil)
	_, s2 := alice.login()
	require.NoError(t, e.mgr.Revoke(context.Background(), s2.SessionID))

	events := map[string][]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		msg, _ := ev["msg"].(string)
		events[msg] = append(events[msg], ev)
	}
	for _, name := range []string{"session.created", "session.certificate_rotated", "session.rebound", "session.ended", "session.revoked", "login.denied"} {
		require.NotEmpty(t, events[name], name)
	}
	created := events["session.created"][0]
	require.Equal(t, aliceID, created["spiffe_id"])
	require.Equal(t, s.SessionID, created["session_id"])
	require.Equal(t, alice.fp(), created["fingerprint"])
	require.NotEmpty(t, created["remote_addr"])
	rot := events["session.certificate_rotated"][0]
	require.Equal(t, "INFO", rot["level"], "a rotated certificate is routine, not a warning")
	require.Equal(t, rotated.fp(), rot["fingerprint"])
	require.Equal(t, alice.fp(), rot["bound_fingerprint"])
	require.Equal(t, s.SessionID, rot["session_id"])
	causes := map[any]bool{}
	for _, ev := range events["session.ended"] {
		causes[ev["cause"]] = true
	}
	require.True(t, causes["logout"] && causes["revoked"], "%v", causes)
	require.Equal(t, webID, events["login.denied"][0]["spiffe_id"])
}

// TestDenialsHaveOneShape: every denial event — a login by a non-admin, an
// introspection by a non-introspector, a request without a token, a token
// refused by the Manager — carries the same fields.
func TestDenialsHaveOneShape(t *testing.T) {
	e := newEnv(t, envOpts{})
	web, alice := e.as(webID), e.as(aliceID)
	tok, _ := alice.login()
	web.do(http.MethodPost, api.PathSessions, "", nil)
	alice.do(http.MethodPost, api.PathIntrospect, "", strings.NewReader(`{}`))
	alice.do(http.MethodGet, api.PathSessionsSelf, "", nil)
	web.do(http.MethodGet, api.PathSessionsSelf, tok, nil)

	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		msg, _ := ev["msg"].(string)
		if msg != "login.denied" && msg != "introspect.denied" && msg != "session.rejected" {
			continue
		}
		seen[msg] = true
		for _, field := range []string{"code", "reason", "spiffe_id", "fingerprint", "remote_addr"} {
			require.NotEmpty(t, ev[field], "%s has no %s: %s", msg, field, line)
		}
	}
	require.Len(t, seen, 3, "%v", seen)
}

// TestRequestIdentityIsPerRequest: the peer check runs on every request of a
// keep-alive connection, not once per connection.
func TestBindingCheckedEveryRequest(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.as(aliceID)
	tok, s := alice.login()
	for range 3 {
		require.Equal(t, http.StatusOK, alice.do(http.MethodGet, api.PathSessionsSelf, tok, nil).status)
	}
	require.NoError(t, e.mgr.Revoke(context.Background(), s.SessionID))
	require.Equal(t, api.CodeSessionEnded, alice.do(http.MethodGet, api.PathSessionsSelf, tok, nil).code())
	_ = spiffeid.ID{}
}

// TestRevokeOwnSessionsWithSVIDAlone: at the per-identity cap an admin cannot
// log in, and revoking needs no session: its SVID alone ends all of its own
// sessions (DELETE /v1/sessions?spiffe_id=own, no token). Another identity
// without a token cannot, and a token is still checked when one is sent.
func TestRevokeOwnSessionsWithSVIDAlone(t *testing.T) {
	e := newEnv(t, envOpts{perIdentity: 2})
	alice, bob := e.as(aliceID), e.as(bobID)
	alice.login()
	alice.login()
	r := alice.do(http.MethodPost, api.PathSessions, "", nil)
	require.Equal(t, api.CodeSessionLimit, r.code(), "at the cap")

	r = bob.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "", nil)
	require.Equal(t, http.StatusUnauthorized, r.status, "another identity without a token: %s", r.body)
	require.Equal(t, api.CodeMissingToken, r.code())
	require.Len(t, e.mgr.List(nil), 2, "nothing was revoked")

	r = alice.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "garbage", nil)
	require.Equal(t, http.StatusUnauthorized, r.status, "a token sent is checked: %s", r.body)

	r = alice.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var rr api.RevokeResponse
	r.decode(t, &rr)
	require.Equal(t, 2, rr.Revoked)
	require.Empty(t, e.mgr.List(nil))
	alice.login()

	r = e.as(webID).do(http.MethodDelete, api.PathSessions+"?spiffe_id="+webID, "", nil)
	require.Equal(t, http.StatusOK, r.status, "any peer may end its own (no) sessions: %s", r.body)
}
