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
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

var (
	fzAlice  = Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/alice"), Fingerprint: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
	fzAlice2 = Peer{ID: fzAlice.ID, Fingerprint: "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"} // alice's next leaf
	fzBob    = Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/bob"), Fingerprint: "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"}
)

// fzManager is the package's test Manager (silent) with one live session of
// alice's.
func fzManager(tb testing.TB) (*Manager, string) {
	tb.Helper()
	m, _ := NewTestManager(tb, nil)
	tok, _, err := m.Login(context.Background(), fzAlice)
	require.NoError(tb, err)
	return m, tok
}

// fzCode returns the contract code of a Manager refusal, failing on any
// other kind of error.
func fzCode(t *testing.T, err error) api.Code {
	t.Helper()
	var se *Error
	require.True(t, errors.As(err, &se), "error %T %v is not a *session.Error", err, err)
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
			require.NoError(t, err, "genuine token refused")
		} else {
			require.Error(t, err, "a token other than the genuine one was accepted: %q", token)
			require.Contains(t, []api.Code{api.CodeInvalidToken, api.CodeSessionEnded}, fzCode(t, err), "owner, other token")
		}

		// The owner over another leaf: never accepted.
		_, err = m.Validate(ctx, token, fzAlice2)
		require.Error(t, err, "accepted over another leaf: %q", token)
		if c := fzCode(t, err); token == genuine {
			require.Equal(t, api.CodeCertificateRotated, c, "genuine token over a new leaf")
		}

		// Another identity: never accepted, and never told more than invalid_token.
		_, err = m.Validate(ctx, token, fzBob)
		require.Error(t, err, "accepted for another identity: %q", token)
		require.Equal(t, api.CodeInvalidToken, fzCode(t, err), "another identity")

		// Introspection: active exactly for the genuine token and its leaf.
		_, ok := m.Introspect(ctx, token, fzAlice.Fingerprint)
		require.Equal(t, token == genuine, ok, "introspect(%q) active", token)
		_, ok = m.Introspect(ctx, token, fzAlice2.Fingerprint)
		require.False(t, ok, "introspect active for another leaf: %q", token)

		// Rebind: never for another identity; for the owner, only the
		// genuine token may move the session (and then it is moved back).
		_, _, err = m.Rebind(ctx, token, fzBob)
		require.Error(t, err, "rebind by another identity: %q", token)
		if token != genuine {
			_, _, err = m.Rebind(ctx, token, fzAlice2)
			require.Error(t, err, "rebind with a token other than the genuine one: %q", token)
		}
	})
}

// fzSign signs payload as this manager would (our key, our kid), so that the
// claims decoder is reached: an attacker cannot do this from outside, which
// is why these checks live inside the package.
func fzSign(tb testing.TB, m *Manager, payload []byte) string {
	tb.Helper()
	tok, err := m.keys.sign(payload)
	require.NoError(tb, err)
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
	require.NoError(tb, err)
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
	require.NoError(t, err)
	parts := strings.Split(genuine, ".")
	minted, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	// Ed25519 is deterministic: the genuine payload signed again is the
	// genuine token itself, not a forgery (which is why a rebind's token
	// carries a nonce: see claims.RebindNonce).
	require.Equal(t, genuine, fzSign(t, m, minted))
	payloads := map[string][]byte{
		"fail/minted-claims-and-a-space": append(minted, ' '),
		"fail/genuine-claims":            fzPayload(t, fzClaims(m, info.ID)),
		"fail/sub-other":                 fzPayload(t, mapWith(fzClaims(m, info.ID), "sub", fzBob.ID.String())),
		"fail/exp-string":                fzPayload(t, mapWith(fzClaims(m, info.ID), "exp", "tomorrow")),
		"fail/cnf-other-leaf":            fzPayload(t, mapWith(fzClaims(m, info.ID), "cnf", map[string]any{"x5t#S256": fzAlice2.Fingerprint})),
		"fail/not-json":                  []byte("not json"),
		"fail/empty":                     nil,
		"fail/other-session":             fzPayload(t, mapWith(fzClaims(m, info.ID), "jti", "aaaaaaaaaaaaaaaaaaaaaaaaaa")),
		"fail/trailing-claims":           append(fzPayload(t, fzClaims(m, info.ID)), " {}"...),
	}
	for name, payload := range payloads {
		t.Run(name, func(t *testing.T) {
			tok := fzSign(t, m, payload)
			for _, p := range []Peer{fzAlice, fzAlice2, fzBob} {
				_, err := m.Validate(ctx, tok, p)
				var se *Error
				require.ErrorAs(t, err, &se, "%s", p.ID)
				require.Equal(t, api.CodeInvalidToken, se.Code, "%s", p.ID)
				require.Equal(t, ReasonUnknown, se.Reason, "%s", p.ID)
			}
			_, ok := m.Introspect(ctx, tok, fzAlice.Fingerprint)
			require.False(t, ok, "introspect active for a re-signed token")
		})
	}
	_, err = m.Validate(ctx, genuine, fzAlice)
	require.NoError(t, err, "the genuine token stopped working")
}

func mapWith(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}
