package session

// Fuzz tests of the token parsers an attacker reaches: Validate and
// Introspect with any string as the token, and the claims decoder behind a
// valid signature of our own key. Seeds are in testdata/fuzz/FuzzXxx and run
// in every `go test`; scripts/fuzz runs each fuzzer for a bounded time.

import (
	"bytes"
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

// TestClaimTypesSignedWithOurKey: a token signed with our own key but with a
// claim of the wrong JSON type, or missing, or naming another issuer, is
// invalid_token (reason bad_claims), never accepted. A well-formed re-signed
// claim set of the caller's live session is still refused (session_ended):
// only the exact token minted at login or rebind is accepted, since sessions
// are found by the token's hash. From outside the package these tokens
// cannot be made (the key never leaves the Manager); the HTTP tests send the
// same shapes signed with an attacker's key and get invalid_token.
func TestClaimTypesSignedWithOurKey(t *testing.T) {
	m, genuine := fzManager(t)
	info, err := m.Validate(context.Background(), genuine, fzAlice)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(c map[string]any){
		"fail/iss-number":       func(c map[string]any) { c["iss"] = 1 },
		"fail/iss-other":        func(c map[string]any) { c["iss"] = "spiffe://example.org/other" },
		"fail/iss-missing":      func(c map[string]any) { delete(c, "iss") },
		"fail/aud-array":        func(c map[string]any) { c["aud"] = []string{m.iss} },
		"fail/aud-other":        func(c map[string]any) { c["aud"] = "spiffe://example.org/other" },
		"fail/sub-number":       func(c map[string]any) { c["sub"] = 42 },
		"fail/sub-object":       func(c map[string]any) { c["sub"] = map[string]any{"id": fzAlice.ID.String()} },
		"fail/sub-not-spiffe":   func(c map[string]any) { c["sub"] = "alice" },
		"fail/sub-missing":      func(c map[string]any) { delete(c, "sub") },
		"fail/exp-string":       func(c map[string]any) { c["exp"] = "tomorrow" },
		"fail/exp-float":        func(c map[string]any) { c["exp"] = 1.5e9 + 0.5 },
		"fail/exp-missing":      func(c map[string]any) { delete(c, "exp") },
		"fail/jti-number":       func(c map[string]any) { c["jti"] = 7 },
		"fail/jti-missing":      func(c map[string]any) { delete(c, "jti") },
		"fail/cnf-string":       func(c map[string]any) { c["cnf"] = fzAlice.Fingerprint },
		"fail/cnf-array":        func(c map[string]any) { c["cnf"] = []string{fzAlice.Fingerprint} },
		"fail/cnf-missing":      func(c map[string]any) { delete(c, "cnf") },
		"fail/cnf-empty":        func(c map[string]any) { c["cnf"] = map[string]any{} },
		"fail/cnf-x5t-number":   func(c map[string]any) { c["cnf"] = map[string]any{"x5t#S256": 1} },
		"fail/cnf-other-member": func(c map[string]any) { c["cnf"] = map[string]any{"jkt": fzAlice.Fingerprint} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := fzClaims(m, info.ID)
			mutate(c)
			tok := fzSign(t, m, fzPayload(t, c))
			_, err := m.Validate(context.Background(), tok, fzAlice)
			if err == nil {
				t.Fatal("accepted")
			}
			var se *Error
			if !errors.As(err, &se) || se.Code != api.CodeInvalidToken || se.Reason != ReasonClaims {
				t.Fatalf("got %v, want invalid_token (%s)", err, ReasonClaims)
			}
		})
	}
	for name, payload := range map[string]string{
		"fail/not-json":   "not json",
		"fail/json-array": `["iss"]`,
		"fail/null":       `null`,
		"fail/empty":      ``,
	} {
		t.Run(name, func(t *testing.T) {
			tok := fzSign(t, m, []byte(payload))
			if _, err := m.Validate(context.Background(), tok, fzAlice); err == nil || fzCode(t, err) != api.CodeInvalidToken {
				t.Fatalf("got %v, want invalid_token", err)
			}
		})
	}
	t.Run("fail/re-signed-genuine-claims", func(t *testing.T) {
		tok := fzSign(t, m, fzPayload(t, fzClaims(m, info.ID)))
		if _, err := m.Validate(context.Background(), tok, fzAlice); err == nil || fzCode(t, err) != api.CodeSessionEnded {
			t.Fatalf("got %v, want session_ended (genuine signature, but not this session's token)", err)
		}
		if _, err := m.Validate(context.Background(), tok, fzBob); err == nil || fzCode(t, err) != api.CodeInvalidToken {
			t.Fatalf("other identity: got %v, want invalid_token", err)
		}
	})
	if _, err := m.Validate(context.Background(), genuine, fzAlice); err != nil {
		t.Fatalf("the genuine token stopped working: %v", err)
	}
}

// FuzzClaims signs any payload with our own key and checks that the claims
// decoder never panics and that such a token is never accepted; session_ended
// (the only detailed answer) comes only for a claim set that names the caller
// with our issuer and audience.
func FuzzClaims(f *testing.F) {
	m, genuine := fzManager(f)
	info, err := m.Validate(context.Background(), genuine, fzAlice)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(genuine, ".")
	if p, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
		f.Add(p)
	}
	f.Add(fzPayload(f, fzClaims(m, info.ID)))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, payload []byte) {
		tok := fzSign(t, m, payload)
		for _, p := range []Peer{fzAlice, fzAlice2, fzBob} {
			_, err := m.Validate(ctx, tok, p)
			if err == nil {
				t.Fatalf("a re-signed token was accepted for %s: payload %q", p.ID, payload)
			}
			switch c := fzCode(t, err); c {
			case api.CodeInvalidToken:
			case api.CodeSessionEnded:
				var got struct {
					Iss, Aud, Sub string
				}
				// Decoded as verify does: the first JSON value (trailing
				// data after it is not looked at).
				if json.NewDecoder(bytes.NewReader(payload)).Decode(&got) != nil || got.Sub != p.ID.String() || got.Iss != m.iss || got.Aud != m.iss {
					t.Fatalf("session_ended for %s with claims %q", p.ID, payload)
				}
			default:
				t.Fatalf("code %s for payload %q", c, payload)
			}
		}
		if _, ok := m.Introspect(ctx, tok, fzAlice.Fingerprint); ok {
			t.Fatalf("introspect active for a re-signed token: %q", payload)
		}
	})
}
