package auth_test

// Fuzz tests of what an attacker reaches in package auth: the --admin and
// --introspector patterns, and the bearer-token path from the Authorization
// header through the middleware and the session check. Seeds are in
// testdata/fuzz/FuzzXxx and run in every `go test`; scripts/fuzz runs each
// fuzzer for a bounded time.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// FuzzParsePattern parses any pattern and matches it against any SPIFFE ID.
// A pattern that parses prints back to a pattern that parses to the same
// value, and its matching agrees with a plain reading of the syntax on
// normalised ID strings: exact equality, or "strictly below base" as a string
// prefix ending in "/" (SPIFFE ID paths have no empty, "." or ".." segments,
// so that is whole-segment matching).
func FuzzParsePattern(f *testing.F) {
	for _, s := range [][2]string{
		{"spiffe://example.org/admin/alice", "spiffe://example.org/admin/alice"},
		{"spiffe://example.org/admin/*", "spiffe://example.org/admin/alice"},
		{"spiffe://example.org/admin/*", "spiffe://example.org/administrator"},
		{"spiffe://example.org/*", "spiffe://example.org"},
		{"spiffe://example.org/admin/*", "spiffe://example.org.evil/admin/alice"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, idString string) {
		p, err := auth.ParsePattern(pattern)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "auth: pattern "), "error not wrapped with the package prefix: %v", err)
			return
		}
		again, err := auth.ParsePattern(p.String())
		require.False(t, err != nil || again != p, "%q prints as %q, which parses to %v, %v", pattern, p.String(), again, err)
		id, err := spiffeid.FromString(idString)
		if err != nil {
			return
		}
		got := p.Match(id)
		base, below := strings.CutSuffix(p.String(), "/*")
		want := id.String() == base
		if below {
			want = strings.HasPrefix(id.String(), base+"/") && len(id.String()) > len(base)+1
		}
		require.False(t, got != want, "pattern %q (%q) matches %q: %v, want %v", pattern, p.String(), id, got, want)
		require.False(t, got && id.TrustDomain().Name() != strings.SplitN(strings.TrimPrefix(base, "spiffe://"), "/", 2)[0], "pattern %q matches %q of another trust domain", p.String(), id)
		require.False(t, auth.Policy([]auth.Pattern{p}).Allows(id) != got, "Policy.Allows disagrees with Pattern.Match")
	})
}

// fzEnv is the package's env, its log reset for each input, with one live
// session of alice's.
type fzEnv struct {
	*env
	inputLog *bytes.Buffer
	genuine  string
	alice    *x509.Certificate
	bob      *x509.Certificate
}

func newFzEnv(tb testing.TB) *fzEnv {
	tb.Helper()
	log := &bytes.Buffer{}
	e := &fzEnv{env: newEnv(tb, envOpts{logTo: log}), inputLog: log}
	alice := e.ca.Issue(tb, "spiffe://example.org/admin/alice")
	e.alice, e.bob = alice.Certificates[0], e.ca.Issue(tb, "spiffe://example.org/admin/bob").Certificates[0]
	var err error
	e.genuine, _, err = e.mgr.Login(context.Background(), session.Peer{ID: alice.ID, Fingerprint: svid.Fingerprint(e.alice)})
	require.NoError(tb, err)
	return e
}

// FuzzRequireSession sends any Authorization header value (once, or twice)
// to the middleware over alice's and over bob's leaf. Only alice's genuine
// token as `Bearer TOKEN` in a single header gets through; every refusal is
// the contract's: a JSON error with the code that goes with the status, a
// WWW-Authenticate challenge on 401, never a 5xx; and no token reaches the
// log.
func FuzzRequireSession(f *testing.F) {
	e := newFzEnv(f)
	f.Add("Bearer "+e.genuine, false)
	f.Add("bearer   "+e.genuine, false)
	f.Add("Bearer "+e.genuine, true)
	f.Add("Bearer "+e.genuine+" ", false)
	f.Add("Basic "+e.genuine, false)
	f.Add(e.genuine, false)
	f.Fuzz(func(t *testing.T, value string, twice bool) {
		values := []string{value}
		if twice {
			values = append(values, value)
		}
		for _, leaf := range []*x509.Certificate{e.alice, e.bob} {
			e.inputLog.Reset()
			req := httptest.NewRequest(http.MethodGet, pathSession, nil)
			req.Header["Authorization"] = values
			rec := e.serveHTTP(req, []*x509.Certificate{leaf}, true)

			token, isBearer := bearer(value)
			accept := leaf == e.alice && !twice && isBearer && token == e.genuine
			require.False(t, accept != (rec.Code == http.StatusOK), "leaf %s, header %q (twice %v): status %d", leaf.URIs[0], value, twice, rec.Code)
			if rec.Code == http.StatusOK {
				continue
			}
			checkRefusal(t, rec, twice, leaf == e.alice)
			require.NotContains(t, e.inputLog.String(), e.genuine, "the genuine token is in the log")
			// A JWS-looking value (it has a dot and is long): must not be
			// logged either. Shorter ones could be a substring of anything.
			require.False(t, len(token) >= 32 && strings.Contains(token, ".") && strings.Contains(e.inputLog.String(), token), "the presented token is in the log: %s", e.inputLog)
		}
	})
}

// bearer reads a header value the way the contract describes it: the scheme
// "Bearer" (any case), spaces, and the token.
func bearer(value string) (string, bool) {
	scheme, rest, ok := strings.Cut(value, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	return strings.TrimLeft(rest, " "), true
}

func checkRefusal(t *testing.T, rec *httptest.ResponseRecorder, twice, owner bool) {
	t.Helper()
	var body api.ErrorResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "status %d with a body that is not JSON: %q", rec.Code, rec.Body)
	require.NotNil(t, body.Error, "status %d with a body that is not a JSON error: %q", rec.Code, rec.Body)
	code := body.Error.Code
	require.Equal(t, code.Status(), rec.Code, "code %s with status %d", code, rec.Code)
	switch {
	case twice:
		require.Equal(t, api.CodeBadRequest, code, "two Authorization headers")
	case code == api.CodeSessionEnded || code == api.CodeCertificateRotated:
		require.True(t, owner, "detailed code %s given to another identity", code)
	default:
		require.Contains(t, []api.Code{api.CodeMissingToken, api.CodeInvalidToken}, code, "unexpected code")
	}
	require.False(t, rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != api.WWWAuthenticate(code), "401 %s with WWW-Authenticate %q", code, rec.Header().Get("WWW-Authenticate"))
}
