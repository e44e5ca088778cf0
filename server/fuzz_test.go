package server_test

// Fuzz tests of what an attacker reaches in the API handler: the JSON body
// of POST /v1/introspect, and any method, path and query from a session
// holder. Seeds are in testdata/fuzz/FuzzXxx and run in every `go test`;
// scripts/fuzz runs each fuzzer for a bounded time.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// fzAPI is the package's env, its log reset for each input, with one
// session of alice's; requests reach the handler without TLS, carrying the
// peer's verified leaf as a TLS connection would.
type fzAPI struct {
	*env
	inputLog *bytes.Buffer
	alice    *x509.Certificate
	intro    *x509.Certificate
	genuine  string
}

func newFzAPI(tb testing.TB) *fzAPI {
	tb.Helper()
	log := &bytes.Buffer{}
	e := newEnv(tb, envOpts{logTo: log, session: session.Config{SweepInterval: time.Hour}})
	a := &fzAPI{
		env:      e,
		inputLog: log,
		alice:    e.ca.Issue(tb, aliceID).Certificates[0],
		intro:    e.ca.Issue(tb, introID).Certificates[0],
	}
	a.relogin(tb)
	return a
}

// relogin opens a new session of alice's when hers has ended.
func (a *fzAPI) relogin(tb testing.TB) {
	tb.Helper()
	if a.genuine != "" {
		if _, err := a.mgr.Validate(context.Background(), a.genuine, a.alicePeer()); err == nil {
			return
		}
	}
	tok, _, err := a.mgr.Login(context.Background(), a.alicePeer())
	require.NoError(tb, err)
	a.genuine = tok
}

func (a *fzAPI) alicePeer() session.Peer {
	return session.Peer{ID: spiffeid.RequireFromString(aliceID), Fingerprint: svid.Fingerprint(a.alice)}
}

// serve calls the handler with req from leaf, with a fresh log.
func (a *fzAPI) serve(req *http.Request, leaf *x509.Certificate) *httptest.ResponseRecorder {
	a.inputLog.Reset()
	return a.serveHTTP(req, leaf)
}

// fzCheckError checks an error answer: JSON, a code that goes with the
// status, a challenge on 401, no 5xx.
func fzCheckError(t *testing.T, rec *httptest.ResponseRecorder) api.Code {
	t.Helper()
	require.False(t, rec.Code >= 500, "status %d: %s", rec.Code, rec.Body)
	var body api.ErrorResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "status %d with a body that is not JSON: %q", rec.Code, rec.Body)
	require.NotNil(t, body.Error, "status %d with a body that is not a JSON error: %q", rec.Code, rec.Body)
	require.Equal(t, body.Error.Code.Status(), rec.Code, "code %s with status %d", body.Error.Code, rec.Code)
	require.False(t, rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "", "401 without WWW-Authenticate")
	require.False(t, rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "", "405 without Allow")
	return body.Error.Code
}

// FuzzIntrospect posts any body to /v1/introspect as an introspector. The
// answer is 400 for anything that is not one JSON object with a token and a
// fingerprint, 413 past 64 KiB, else 200 with active true exactly for alice's
// genuine token and her leaf's fingerprint. Never a 5xx; no token logged.
func FuzzIntrospect(f *testing.F) {
	a := newFzAPI(f)
	fp := svid.Fingerprint(a.alice)
	for _, s := range []string{
		`{"token":"` + a.genuine + `","cnf":{"x5t#S256":"` + fp + `"}}`,
		`{"TOKEN":"` + a.genuine + `","Cnf":{"X5T#s256":"` + fp + `"}}`,
		`{"token":"` + a.genuine + `","cnf":{"x5t#S256":"` + fp + `"}} {}`,
		`{"token":"` + a.genuine + `","token":"x","cnf":{"x5t#S256":"` + fp + `"}}`,
		`{"token":"` + a.genuine + `","cnf":{"x5t#S256":"` + fp + `"},"extra":[1,2,{"a":null}]}`,
		`{"token":"` + a.genuine + `","cnf":{"x5t#S256":"` + fp + `"}}` + strings.Repeat(" ", api.MaxBodyBytes),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a.relogin(t)
		req := httptest.NewRequest(http.MethodPost, api.PathIntrospect, bytes.NewReader(body))
		rec := a.serve(req, a.intro)

		var want api.IntrospectRequest
		switch {
		case len(body) > api.MaxBodyBytes && json.Valid(body[:api.MaxBodyBytes]):
			// A complete object within the limit and more after it: either
			// answer is right (413 if the reader hit the limit first).
			require.False(t, rec.Code != http.StatusRequestEntityTooLarge && rec.Code != http.StatusBadRequest, "body of %d bytes: status %d", len(body), rec.Code)
			return
		case len(body) > api.MaxBodyBytes:
			require.Contains(t, []api.Code{api.CodePayloadTooLarge, api.CodeBadRequest}, fzCheckError(t, rec), "body of %d bytes", len(body))
			return
		case json.Unmarshal(body, &want) != nil || want.Token == "" || want.CNF.X5TS256 == "":
			require.Equal(t, api.CodeBadRequest, fzCheckError(t, rec), "body %q", body)
			return
		}
		require.False(t, rec.Code != http.StatusOK, "body %q: status %d %s", body, rec.Code, rec.Body)
		var got api.IntrospectResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		active := want.Token == a.genuine && want.CNF.X5TS256 == fp
		require.False(t, got.Active != active || (got.Session != nil) != active, "body %q: active %v (session %v), want %v", body, got.Active, got.Session, active)
		require.NotContains(t, a.inputLog.String(), a.genuine, "the token is in the log")
	})
}

// FuzzRoute sends any method, path and query with alice's genuine token. No
// input makes a 5xx; every error is a JSON error with the code of its status;
// the session's token is never in the log.
func FuzzRoute(f *testing.F) {
	a := newFzAPI(f)
	for _, s := range [][2]string{
		{"GET", "/v1/sessions?spiffe_id=spiffe://example.org/admin/alice"},
		{"GET", "/v1/sessions?spiffe_id=spiffe://example.org/admin/alice&spiffe_id=x"},
		{"GET", "/v1/sessions?spiffe_id=%zz"},
		{"DELETE", "/v1/sessions?spiffe_id=spiffe://example.org/admin/bob"},
		{"DELETE", "/v1/sessions/self/"},
		{"DELETE", "/v1/sessions/aaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"PUT", "/v1/sessions/self"},
		{"GET", "/v1/sessions/self/rebind"},
		{"GET", "/v1//sessions"},
		{"GET", "/v1/sessions/%2e%2e/self"},
		{"POST", "/v1/introspect"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		a.relogin(t)
		req, err := http.NewRequest(method, "https://tetherd.test"+target, io.NopCloser(strings.NewReader("{}")))
		if err != nil || !strings.HasPrefix(target, "/") {
			return // net/http's client and server refuse these before any handler
		}
		req.Header.Set("Authorization", "Bearer "+a.genuine)
		rec := a.serve(req, a.alice)
		if rec.Code >= 400 {
			fzCheckError(t, rec)
		} else {
			require.True(t, rec.Code >= 200 && rec.Code < 300, "%s %s: status %d", method, target, rec.Code)
		}
		require.NotContains(t, a.inputLog.String(), a.genuine, "the token is in the log")
	})
}
