package session

// Fuzz tests of what an attacker reaches with a token: Validate, Introspect
// and Rebind with any string as the token; and tokens signed with our own key
// that were not minted here. Seeds are in testdata/fuzz/FuzzXxx and run in
// every `go test`; scripts/fuzz runs each fuzzer for a bounded time.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/pkg/api"
)

var (
	fzIssuer = spiffeid.RequireFromString("spiffe://example.org/tetherd")
	fzAlice  = Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/alice"), Fingerprint: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
	fzAlice2 = Peer{ID: fzAlice.ID, Fingerprint: "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"} // alice's next leaf
	fzBob    = Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/bob"), Fingerprint: "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"}
)

// fzManager is a silent manager with one live session of alice's.
func fzManager(tb testing.TB) (*Manager, string) {
	tb.Helper()
	m, err := NewManager(Config{Issuer: fzIssuer, LoginRate: rate.Inf, SweepInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	tok, _, err := m.Login(context.Background(), fzAlice)
	if err != nil {
		tb.Fatal(err)
	}
	return m, tok
}

// fzCode returns the contract code of a Manager refusal, failing on any
// other kind of error.
func fzCode(t *testing.T, err error) api.Code {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %T %v is not a *session.Error", err, err)
	}
	return se.Code
}

// fzSeedTokens are token shapes worth starting from, next to the committed
// corpus: the genuine token and simple mutations of it.
func fzSeedTokens(tok string) []string {
	parts := strings.Split(tok, ".")
	return []string{
		tok,
		tok[:len(tok)-1],
		tok + "A",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1],
		"." + parts[1] + "." + parts[2],
		strings.Repeat(tok, 8),
	}
}

// FuzzValidate checks Validate and Introspect against any token: only the
// genuine token over its own identity and leaf is ever accepted; the
// detailed refusals (session_ended, certificate_rotated) go only to the
// session's own SPIFFE ID; nothing panics.
func FuzzValidate(f *testing.F) {
	m, genuine := fzManager(f)
	for _, s := range fzSeedTokens(genuine) {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, token string) {
		// The owner over the bound leaf: accepted exactly for the genuine token.
		_, err := m.Validate(ctx, token, fzAlice)
		if token == genuine {
			if err != nil {
				t.Fatalf("genuine token refused: %v", err)
			}
		} else if err == nil {
			t.Fatalf("a token other than the genuine one was accepted: %q", token)
		} else if c := fzCode(t, err); c != api.CodeInvalidToken && c != api.CodeSessionEnded {
			t.Fatalf("owner, other token: code %s", c)
		}

		// The owner over another leaf: never accepted.
		_, err = m.Validate(ctx, token, fzAlice2)
		if err == nil {
			t.Fatalf("accepted over another leaf: %q", token)
		}
		if c := fzCode(t, err); token == genuine && c != api.CodeCertificateRotated {
			t.Fatalf("genuine token over a new leaf: code %s, want certificate_rotated", c)
		}

		// Another identity: never accepted, and never told more than invalid_token.
		_, err = m.Validate(ctx, token, fzBob)
		if err == nil {
			t.Fatalf("accepted for another identity: %q", token)
		}
		if c := fzCode(t, err); c != api.CodeInvalidToken {
			t.Fatalf("another identity: code %s, want invalid_token", c)
		}

		// Introspection: active exactly for the genuine token and its leaf.
		if _, ok := m.Introspect(ctx, token, fzAlice.Fingerprint); ok != (token == genuine) {
			t.Fatalf("introspect(%q) active = %v", token, ok)
		}
		if _, ok := m.Introspect(ctx, token, fzAlice2.Fingerprint); ok {
			t.Fatalf("introspect active for another leaf: %q", token)
		}

		// Rebind: never for another identity; for the owner, only the
		// genuine token may move the session (and then it is moved back).
		if _, _, err := m.Rebind(ctx, token, fzBob); err == nil {
			t.Fatalf("rebind by another identity: %q", token)
		}
		if token != genuine {
			if _, _, err := m.Rebind(ctx, token, fzAlice2); err == nil {
				t.Fatalf("rebind with a token other than the genuine one: %q", token)
			}
		}
	})
}

// fzSign signs payload as this manager would (our key, our kid), so that the
// claims decoder is reached: an attacker cannot do this from outside, which
// is why these checks live inside the package.
func fzSign(tb testing.TB, m *Manager, payload []byte) string {
	tb.Helper()
	jws, err := m.keys.signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// fzClaims is a valid claim set of alice's session; tests change one member.
func fzClaims(m *Manager, sessionID string) map[string]any {
	return map[string]any{
		"iss": m.iss, "aud": m.iss, "sub": fzAlice.ID.String(), "jti": sessionID,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		"cnf": map[string]any{"x5t#S256": fzAlice.Fingerprint},
	}
}

func fzPayload(tb testing.TB, claims map[string]any) []byte {
	tb.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestReSignedTokensRefused: a token signed with our own key is still
// refused unless it is the exact token minted at login or rebind, whatever
// its claims say (even the live session's own claims, re-signed): sessions
// are found by the token's hash, and nothing decodes claims. It is
// invalid_token (unknown_session) for everybody, the owner included, and
// never active in introspection. From outside the package such tokens cannot
// be made (the key never leaves the Manager).
func TestReSignedTokensRefused(t *testing.T) {
	m, genuine := fzManager(t)
	ctx := context.Background()
	info, err := m.Validate(ctx, genuine, fzAlice)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(genuine, ".")
	minted, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payloads := map[string][]byte{
		"fail/minted-claims":   minted, // the genuine payload under a new signature
		"fail/genuine-claims":  fzPayload(t, fzClaims(m, info.ID)),
		"fail/sub-other":       fzPayload(t, mapWith(fzClaims(m, info.ID), "sub", fzBob.ID.String())),
		"fail/exp-string":      fzPayload(t, mapWith(fzClaims(m, info.ID), "exp", "tomorrow")),
		"fail/cnf-other-leaf":  fzPayload(t, mapWith(fzClaims(m, info.ID), "cnf", map[string]any{"x5t#S256": fzAlice2.Fingerprint})),
		"fail/not-json":        []byte("not json"),
		"fail/empty":           nil,
		"fail/other-session":   fzPayload(t, mapWith(fzClaims(m, info.ID), "jti", "aaaaaaaaaaaaaaaaaaaaaaaaaa")),
		"fail/trailing-claims": append(fzPayload(t, fzClaims(m, info.ID)), " {}"...),
	}
	for name, payload := range payloads {
		t.Run(name, func(t *testing.T) {
			tok := fzSign(t, m, payload)
			for _, p := range []Peer{fzAlice, fzAlice2, fzBob} {
				_, err := m.Validate(ctx, tok, p)
				var se *Error
				if !errors.As(err, &se) || se.Code != api.CodeInvalidToken || se.Reason != ReasonUnknown {
					t.Fatalf("%s: got %v, want invalid_token (%s)", p.ID, err, ReasonUnknown)
				}
			}
			if _, ok := m.Introspect(ctx, tok, fzAlice.Fingerprint); ok {
				t.Fatal("introspect active for a re-signed token")
			}
		})
	}
	if _, err := m.Validate(ctx, genuine, fzAlice); err != nil {
		t.Fatalf("the genuine token stopped working: %v", err)
	}
}

func mapWith(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}
