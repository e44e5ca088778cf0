package auth_test

// Fuzz tests of what an attacker reaches in package auth: the --admin and
// --introspector patterns, and the bearer-token path from the Authorization
// header through the middleware and the session check. Seeds are in
// testdata/fuzz/FuzzXxx and run in every `go test`; scripts/fuzz runs each
// fuzzer for a bounded time.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
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
			if !strings.HasPrefix(err.Error(), "auth: pattern ") {
				t.Fatalf("error not wrapped with the package prefix: %v", err)
			}
			return
		}
		again, err := auth.ParsePattern(p.String())
		if err != nil || again != p {
			t.Fatalf("%q prints as %q, which parses to %v, %v", pattern, p.String(), again, err)
		}
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
		if got != want {
			t.Fatalf("pattern %q (%q) matches %q: %v, want %v", pattern, p.String(), id, got, want)
		}
		if got && id.TrustDomain().Name() != strings.SplitN(strings.TrimPrefix(base, "spiffe://"), "/", 2)[0] {
			t.Fatalf("pattern %q matches %q of another trust domain", p.String(), id)
		}
		if auth.Policy([]auth.Pattern{p}).Allows(id) != got {
			t.Fatal("Policy.Allows disagrees with Pattern.Match")
		}
	})
}

// fzEnv is the middleware in front of a handler that answers 200, with a
// manager holding one live session of alice's.
type fzEnv struct {
	h       http.Handler
	log     *bytes.Buffer
	genuine string
	alice   *x509.Certificate
	bob     *x509.Certificate
}

func newFzEnv(tb testing.TB) *fzEnv {
	tb.Helper()
	ca := testpki.NewCA(tb, "example.org")
	e := &fzEnv{
		log:   &bytes.Buffer{},
		alice: ca.Issue(tb, "spiffe://example.org/admin/alice").Certificates[0],
		bob:   ca.Issue(tb, "spiffe://example.org/admin/bob").Certificates[0],
	}
	logger := slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := session.NewManager(session.Config{
		Issuer: spiffeid.RequireFromString("spiffe://example.org/tetherd"), LoginRate: rate.Inf,
		SweepInterval: time.Hour, Logger: logger,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	aliceID, _ := spiffeid.FromString("spiffe://example.org/admin/alice")
	e.genuine, _, err = m.Login(context.Background(), session.Peer{ID: aliceID, Fingerprint: svid.Fingerprint(e.alice)})
	if err != nil {
		tb.Fatal(err)
	}
	mw := &auth.Middleware{Sessions: m, Logger: logger}
	e.h = mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.CallerFrom(r.Context()); !ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
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
			e.log.Reset()
			req := httptest.NewRequest(http.MethodGet, "/v1/sessions/self", nil)
			req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
			req.Header["Authorization"] = values
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)

			token, isBearer := bearer(value)
			accept := leaf == e.alice && !twice && isBearer && token == e.genuine
			if accept != (rec.Code == http.StatusOK) {
				t.Fatalf("leaf %s, header %q (twice %v): status %d", leaf.URIs[0], value, twice, rec.Code)
			}
			if rec.Code == http.StatusOK {
				continue
			}
			checkRefusal(t, rec, twice, leaf == e.alice)
			if strings.Contains(e.log.String(), e.genuine) {
				t.Fatalf("the genuine token is in the log: %s", e.log)
			}
			// A JWS-looking value (it has a dot and is long): must not be
			// logged either. Shorter ones could be a substring of anything.
			if len(token) >= 32 && strings.Contains(token, ".") && strings.Contains(e.log.String(), token) {
				t.Fatalf("the presented token is in the log: %s", e.log)
			}
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
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
		t.Fatalf("status %d with a body that is not a JSON error: %q", rec.Code, rec.Body)
	}
	code := body.Error.Code
	if code.Status() != rec.Code {
		t.Fatalf("code %s with status %d", code, rec.Code)
	}
	switch {
	case twice:
		if code != api.CodeBadRequest {
			t.Fatalf("two Authorization headers: code %s, want bad_request", code)
		}
	case code == api.CodeSessionEnded || code == api.CodeCertificateRotated:
		if !owner {
			t.Fatalf("detailed code %s given to another identity", code)
		}
	case code != api.CodeMissingToken && code != api.CodeInvalidToken:
		t.Fatalf("unexpected code %s", code)
	}
	if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != api.WWWAuthenticate(code) {
		t.Fatalf("401 %s with WWW-Authenticate %q", code, rec.Header().Get("WWW-Authenticate"))
	}
}
