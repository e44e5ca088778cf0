package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

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
	e.remember(lr.Token)
	require.Equal(t, s.SessionID, lr.Session.SessionID)
	require.Equal(t, s.ExpiresAt, lr.Session.ExpiresAt)
	require.Equal(t, rotated.fp(), lr.Session.CNF.X5TS256)

	require.Equal(t, http.StatusOK, rotated.do(http.MethodGet, api.PathSessionsSelf, lr.Token, nil).status)
	require.Equal(t, api.CodeCertificateRotated, old.do(http.MethodGet, api.PathSessionsSelf, lr.Token, nil).code(), "the old leaf is dead for it")
	require.Equal(t, api.CodeSessionEnded, rotated.do(http.MethodGet, api.PathSessionsSelf, tok, nil).code(), "the old token is dead")

	// The token authorizes a rebind: a body is looked at only after it.
	big := strings.NewReader(strings.Repeat("a", api.MaxBodyBytes+1))
	r = e.as(webID).do(http.MethodPost, api.PathRebind, "", big)
	require.Equal(t, api.CodeMissingToken, r.code(), "no token: refused before the body is read: %s", r.body)
	big.Reset(strings.Repeat("a", api.MaxBodyBytes+1))
	r = bob.do(http.MethodPost, api.PathRebind, lr.Token, big)
	require.Equal(t, api.CodeInvalidToken, r.code(), "another identity's token: refused before the body is read")
	third := e.as(aliceID)
	big.Reset(strings.Repeat("a", api.MaxBodyBytes+1))
	r = third.do(http.MethodPost, api.PathRebind, lr.Token, big)
	require.Equal(t, api.CodePayloadTooLarge, r.code(), "authorized: then the body is bounded")
	require.Equal(t, http.StatusOK, rotated.do(http.MethodGet, api.PathSessionsSelf, lr.Token, nil).status, "the refused rebind changed nothing")

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
	e := newEnv(t, envOpts{session: session.Config{MaxSessionsPerIdentity: 2}})
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
		// A query net/url cannot parse is refused, not read as no filter
		// (which would list every identity's sessions).
		{"bad_request/list-bad-escape", alice, "GET", api.PathSessions + "?spiffe_id=%zz", tok, nil, nil, 400, api.CodeBadRequest},
		{"bad_request/list-semicolon", alice, "GET", api.PathSessions + "?spiffe_id=" + bobID + ";x=1", tok, nil, nil, 400, api.CodeBadRequest},
		{"bad_request/list-unknown-parameter", alice, "GET", api.PathSessions + "?spiffe_ids=" + bobID, tok, nil, nil, 400, api.CodeBadRequest},
		{"bad_request/revoke-bad-escape", alice, "DELETE", api.PathSessions + "?spiffe_id=%zz", tok, nil, nil, 400, api.CodeBadRequest},
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
	e := newEnv(t, envOpts{session: session.Config{LoginRate: 0.001, LoginBurst: 2}})
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
	e.remember(lr.Token)
	rotated.do(http.MethodDelete, api.PathSessionsSelf, lr.Token, nil)
	e.as(webID).do(http.MethodPost, api.PathSessions, "", nil)
	_, s2 := alice.login()
	require.NoError(t, e.mgr.Revoke(context.Background(), s2.SessionID))
	// Revocations over the API name who revoked: bob ends alice's session
	// by its ID with his token; alice ends her own with her SVID alone.
	bob := e.as(bobID)
	btok, bs := bob.login()
	_, s3 := alice.login()
	require.Equal(t, http.StatusNoContent, bob.do(http.MethodDelete, api.PathSessions+"/"+s3.SessionID, btok, nil).status)
	_, s4 := alice.login()
	require.Equal(t, http.StatusOK, alice.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "", nil).status)

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

	revoked := map[any]map[string]any{}
	for _, ev := range events["session.revoked"] {
		revoked[ev["session_id"]] = ev
	}
	byBob := revoked[s3.SessionID]
	require.NotNil(t, byBob, "bob's revocation of %s", s3.SessionID)
	require.Equal(t, aliceID, byBob["spiffe_id"], "the session's owner")
	require.Equal(t, bobID, byBob["by_spiffe_id"], "who revoked it")
	require.Equal(t, bob.fp(), byBob["by_fingerprint"])
	require.Equal(t, bs.SessionID, byBob["by_session_id"])
	byAlice := revoked[s4.SessionID]
	require.NotNil(t, byAlice, "alice's revocation of %s with her SVID alone", s4.SessionID)
	require.Equal(t, aliceID, byAlice["by_spiffe_id"])
	require.Equal(t, alice.fp(), byAlice["by_fingerprint"])
	require.NotContains(t, byAlice, "by_session_id", "no token, no session")
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
	e := newEnv(t, envOpts{session: session.Config{MaxSessionsPerIdentity: 2}})
	alice, bob := e.as(aliceID), e.as(bobID)
	alice.login()
	alice.login()
	r := alice.do(http.MethodPost, api.PathSessions, "", nil)
	require.Equal(t, api.CodeSessionLimit, r.code(), "at the cap")

	r = bob.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "", nil)
	require.Equal(t, http.StatusUnauthorized, r.status, "another identity without a token: %s", r.body)
	require.Equal(t, api.CodeMissingToken, r.code())
	require.Len(t, must(e.mgr.List(nil)), 2, "nothing was revoked")

	r = alice.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "garbage", nil)
	require.Equal(t, http.StatusUnauthorized, r.status, "a token sent is checked: %s", r.body)

	r = alice.do(http.MethodDelete, api.PathSessions+"?spiffe_id="+aliceID, "", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var rr api.RevokeResponse
	r.decode(t, &rr)
	require.Equal(t, 2, rr.Revoked)
	require.Empty(t, must(e.mgr.List(nil)))
	alice.login()

	r = e.as(webID).do(http.MethodDelete, api.PathSessions+"?spiffe_id="+webID, "", nil)
	require.Equal(t, http.StatusOK, r.status, "any peer may end its own (no) sessions: %s", r.body)
}
