package session_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// requireRefusal checks a refusal's code and reason.
func requireRefusal(t *testing.T, err error, code api.Code, reason string) {
	t.Helper()
	var se *session.Error
	require.Truef(t, errors.As(err, &se), "error %T %v is not a *session.Error", err, err)
	require.Equal(t, code, se.Code, "reason %s", se.Reason)
	require.Equal(t, reason, se.Reason)
}

// TestRefusalsCostTheSame (finding 9): a stranger presenting a stolen token
// must not be able to tell a live session from an ended one by how long the
// refusal takes. No refusal verifies a signature any more: each is a hash,
// a map lookup or two and the error value. Allocations are the deterministic
// witness (a signature check costs over a hundred): every refusal allocates
// the same, at most the error more than an accepted token.
func TestRefusalsCostTheSame(t *testing.T) {
	m, _ := session.NewTestManager(t, nil)
	ctx := context.Background()
	live, _ := login(t, m, alice)
	ended, endedInfo := login(t, m, alice)
	require.NoError(t, m.Logout(ctx, endedInfo.ID))
	rebound, _ := login(t, m, bob)
	_, _, err := m.Rebind(ctx, rebound, session.Peer{ID: bob.ID, Fingerprint: "fp-bob-2"})
	require.NoError(t, err)

	allocs := func(token string, peer session.Peer, want api.Code) float64 {
		t.Helper()
		_, err := m.Validate(ctx, token, peer)
		if want == "" {
			require.NoError(t, err)
		} else {
			requireCode(t, err, want)
		}
		return testing.AllocsPerRun(200, func() { _, _ = m.Validate(ctx, token, peer) })
	}
	accepted := allocs(live, alice, "")
	refusals := map[string]float64{
		"stranger/live-token":       allocs(live, bob, api.CodeInvalidToken),
		"stranger/ended-token":      allocs(ended, bob, api.CodeInvalidToken),
		"owner/ended-token":         allocs(ended, alice, api.CodeSessionEnded),
		"stranger/superseded-token": allocs(rebound, alice, api.CodeInvalidToken),
		"owner/superseded-token":    allocs(rebound, bob, api.CodeSessionEnded),
		"anyone/unknown-token":      allocs(live[:len(live)-8]+"AAAAAAAA", alice, api.CodeInvalidToken),
	}
	first := refusals["stranger/live-token"]
	for name, n := range refusals {
		require.Equalf(t, first, n, "%s allocates %v, a stranger's refusal of a live token %v", name, n, first)
		require.LessOrEqualf(t, n, accepted+1, "%s allocates %v; an accepted token %v", name, n, accepted)
	}

	// Introspection never checked signatures; its refusals stay alike too.
	introspect := func(token, fp string) float64 {
		return testing.AllocsPerRun(200, func() { _, _ = m.Introspect(ctx, token, fp) })
	}
	require.Equal(t, introspect(live, bob.Fingerprint), introspect(ended, alice.Fingerprint))
}

// TestTombstones: every way a token stops opening its session leaves an
// answer of session_ended for its owner (with the reason) and invalid_token
// for everyone else, without any signature check.
func TestTombstones(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		reason string
		end    func(t *testing.T, m *session.Manager, clk interface{ Add(time.Duration) }, tok string, info session.Info)
	}{
		{"logout", session.ReasonEnded, func(t *testing.T, m *session.Manager, _ interface{ Add(time.Duration) }, _ string, info session.Info) {
			require.NoError(t, m.Logout(ctx, info.ID))
		}},
		{"revoke", session.ReasonEnded, func(t *testing.T, m *session.Manager, _ interface{ Add(time.Duration) }, _ string, info session.Info) {
			require.NoError(t, m.Revoke(ctx, info.ID))
		}},
		{"revoke-identity", session.ReasonEnded, func(t *testing.T, m *session.Manager, _ interface{ Add(time.Duration) }, _ string, _ session.Info) {
			require.Equal(t, 1, must(m.RevokeIdentity(ctx, alice.ID)))
		}},
		{"idle-swept", session.ReasonIdle, func(t *testing.T, m *session.Manager, clk interface{ Add(time.Duration) }, _ string, _ session.Info) {
			clk.Add(10 * time.Minute)
			require.Equal(t, 1, m.Sweep(ctx))
		}},
		{"idle-presented", session.ReasonIdle, func(t *testing.T, m *session.Manager, clk interface{ Add(time.Duration) }, tok string, _ session.Info) {
			clk.Add(10 * time.Minute)
			_, err := m.Validate(ctx, tok, alice)
			requireRefusal(t, err, api.CodeSessionEnded, session.ReasonIdle)
		}},
		{"superseded", session.ReasonSuperseded, func(t *testing.T, m *session.Manager, _ interface{ Add(time.Duration) }, tok string, _ session.Info) {
			_, _, err := m.Rebind(ctx, tok, alice2)
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, clk := session.NewTestManager(t, nil)
			tok, info := login(t, m, alice)
			tc.end(t, m, clk, tok, info)
			require.Equal(t, 1, m.Tombstones())
			for _, p := range []session.Peer{alice, alice2} { // the owner, over any leaf
				_, err := m.Validate(ctx, tok, p)
				requireRefusal(t, err, api.CodeSessionEnded, tc.reason)
				_, _, err = m.Rebind(ctx, tok, p)
				requireRefusal(t, err, api.CodeSessionEnded, tc.reason)
			}
			_, err := m.Validate(ctx, tok, bob)
			requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherIdentity)
			_, _, err = m.Rebind(ctx, tok, bob)
			requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherIdentity)
			_, ok := m.Introspect(ctx, tok, alice.Fingerprint)
			require.False(t, ok)
		})
	}

	t.Run("expired", func(t *testing.T) {
		// A session past its absolute end: its token is past its exp too. Its
		// tombstone is kept TombstoneGrace longer, so the owner hears
		// session_ended (expired) before and after the sweep; after the
		// grace nobody remembers the token.
		m, clk := session.NewTestManager(t, nil)
		tok, _ := login(t, m, alice)
		for range 6 {
			clk.Add(9 * time.Minute)
			_, err := m.Validate(ctx, tok, alice)
			require.NoError(t, err)
		}
		clk.Add(6 * time.Minute) // exactly the end
		_, err := m.Validate(ctx, tok, bob)
		requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherIdentity)
		_, err = m.Validate(ctx, tok, alice)
		requireRefusal(t, err, api.CodeSessionEnded, session.ReasonExpired)
		require.Zero(t, m.Len())
		require.Equal(t, 1, m.Tombstones(), "an expired token's tombstone outlives its exp by the grace")
		m.Sweep(ctx)
		_, err = m.Validate(ctx, tok, alice)
		requireRefusal(t, err, api.CodeSessionEnded, session.ReasonExpired)
		_, err = m.Validate(ctx, tok, bob)
		requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherIdentity)
		clk.Add(session.TombstoneGrace)
		m.Sweep(ctx)
		require.Zero(t, m.Tombstones())
		for _, p := range []session.Peer{alice, bob} {
			_, err = m.Validate(ctx, tok, p)
			requireRefusal(t, err, api.CodeInvalidToken, session.ReasonUnknown)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		m, _ := session.NewTestManager(t, nil)
		tok, _ := login(t, m, alice)
		for token, reason := range map[string]string{
			tok[:len(tok)-8] + "AAAAAAAA": session.ReasonUnknown,
			"a.b.c":                       session.ReasonUnknown,
			"not-a-token":                 session.ReasonMalformed,
			"":                            session.ReasonMalformed,
			tok + "." + tok:               session.ReasonMalformed,
		} {
			_, err := m.Validate(ctx, token, alice)
			requireRefusal(t, err, api.CodeInvalidToken, reason)
		}
		// A token shaped as a compact JWS but with one byte outside its
		// alphabet, anywhere (the middleware hands tokens over unread).
		for _, pos := range []int{0, 1, 2, 3, 5, len(tok) / 2, len(tok) - 1} {
			for c := range 256 {
				if c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
					continue
				}
				b := []byte(tok)
				if b[pos] == '.' {
					continue
				}
				b[pos] = byte(c)
				_, err := m.Validate(ctx, string(b), alice)
				requireRefusal(t, err, api.CodeInvalidToken, session.ReasonMalformed)
			}
		}
	})
}

// TestTombstoneCaps: tombstones are capped per identity and in all, the
// oldest forgotten first; a forgotten token is still refused, as
// invalid_token. An admin logging in and out in a loop holds at most its cap.
func TestTombstoneCaps(t *testing.T) {
	ctx := context.Background()
	churn := func(t *testing.T, m *session.Manager, p session.Peer, n int) []string {
		t.Helper()
		toks := make([]string, n)
		for i := range toks {
			var info session.Info
			toks[i], info = login(t, m, p)
			require.NoError(t, m.Logout(ctx, info.ID))
		}
		return toks
	}
	requireForgotten := func(t *testing.T, m *session.Manager, p session.Peer, toks ...string) {
		t.Helper()
		for _, tok := range toks {
			_, err := m.Validate(ctx, tok, p)
			requireRefusal(t, err, api.CodeInvalidToken, session.ReasonUnknown)
		}
	}
	requireEnded := func(t *testing.T, m *session.Manager, p session.Peer, toks ...string) {
		t.Helper()
		for _, tok := range toks {
			_, err := m.Validate(ctx, tok, p)
			requireRefusal(t, err, api.CodeSessionEnded, session.ReasonEnded)
		}
	}

	t.Run("per-identity", func(t *testing.T) {
		m, _ := session.NewTestManager(t, func(c *session.Config) { c.MaxTombstonesPerIdentity = 3 })
		a := churn(t, m, alice, 5)
		b := churn(t, m, bob, 2)
		require.Equal(t, 5, m.Tombstones())
		requireForgotten(t, m, alice, a[:2]...)
		requireEnded(t, m, alice, a[2:]...)
		requireEnded(t, m, bob, b...) // another identity keeps its own
	})
	t.Run("total", func(t *testing.T) {
		m, _ := session.NewTestManager(t, func(c *session.Config) { c.MaxTombstones = 4 })
		a := churn(t, m, alice, 3)
		b := churn(t, m, bob, 3)
		require.Equal(t, 4, m.Tombstones())
		requireForgotten(t, m, alice, a[:2]...) // the oldest of all go first
		requireEnded(t, m, alice, a[2])
		requireEnded(t, m, bob, b...)
	})
	t.Run("superseded-counts-too", func(t *testing.T) {
		m, _ := session.NewTestManager(t, func(c *session.Config) { c.MaxTombstonesPerIdentity = 2 })
		tok, _ := login(t, m, alice)
		var old []string
		for i := range 4 {
			old = append(old, tok)
			var err error
			tok, _, err = m.Rebind(ctx, tok, session.Peer{ID: alice.ID, Fingerprint: fmt.Sprintf("fp-alice-r%d", i)})
			require.NoError(t, err)
		}
		require.Equal(t, 2, m.Tombstones())
		requireForgotten(t, m, alice, old[:2]...)
		_, err := m.Validate(ctx, old[3], alice)
		requireRefusal(t, err, api.CodeSessionEnded, session.ReasonSuperseded)
	})
	t.Run("defaults-bound-a-login-loop", func(t *testing.T) {
		m, _ := session.NewTestManager(t, nil)
		churn(t, m, alice, 3*session.DefaultTombstonesPerSession*session.DefaultMaxSessionsPerIdentity)
		require.Equal(t, session.DefaultTombstonesPerSession*session.DefaultMaxSessionsPerIdentity, m.Tombstones())
	})
	t.Run("negative-config", func(t *testing.T) {
		_, err := session.NewManager(session.Config{Issuer: issuer, MaxTombstones: -1})
		require.ErrorContains(t, err, "negative")
	})
}

// TestTombstonesSwept: a tombstone is kept until TombstoneGrace past its
// token's exp, then forgotten (refused as invalid_token) and reclaimed by the
// sweep.
func TestTombstonesSwept(t *testing.T) {
	ctx := context.Background()
	m, clk := session.NewTestManager(t, nil) // TTL 1h
	tok, info := login(t, m, alice)
	clk.Add(time.Minute)
	require.NoError(t, m.Logout(ctx, info.ID))
	later, laterInfo := login(t, m, alice) // ends 1m after the first
	require.NoError(t, m.Revoke(ctx, laterInfo.ID))
	require.Equal(t, 2, m.Tombstones())

	clk.Add(info.ExpiresAt.Add(session.TombstoneGrace).Sub(clk.Now()) - time.Second) // a second before the first tombstone's end
	m.Sweep(ctx)
	require.Equal(t, 2, m.Tombstones())
	_, err := m.Validate(ctx, tok, alice)
	requireRefusal(t, err, api.CodeSessionEnded, session.ReasonEnded)

	clk.Add(time.Second) // the first tombstone's end: forgotten before any sweep
	_, err = m.Validate(ctx, tok, alice)
	requireRefusal(t, err, api.CodeInvalidToken, session.ReasonUnknown)
	m.Sweep(ctx)
	require.Equal(t, 1, m.Tombstones(), "only the later token's tombstone is left")
	_, err = m.Validate(ctx, later, alice)
	requireRefusal(t, err, api.CodeSessionEnded, session.ReasonEnded)

	clk.Add(time.Minute)
	m.Sweep(ctx)
	require.Zero(t, m.Tombstones())
	_, err = m.Validate(ctx, later, alice)
	requireRefusal(t, err, api.CodeInvalidToken, session.ReasonUnknown)
}

// TestTombstoneOwnerCompare: a tombstone answers by SPIFFE ID, not by string
// prefix or trust domain.
func TestTombstoneOwnerCompare(t *testing.T) {
	ctx := context.Background()
	m, _ := session.NewTestManager(t, nil)
	tok, info := login(t, m, alice)
	require.NoError(t, m.Logout(ctx, info.ID))
	for _, id := range []string{
		"spiffe://example.org/admin/alice/x",
		"spiffe://example.org/admin/alic",
		"spiffe://example.com/admin/alice",
	} {
		_, err := m.Validate(ctx, tok, session.Peer{ID: spiffeid.RequireFromString(id), Fingerprint: alice.Fingerprint})
		requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherIdentity)
	}
}

// TestPreviousInstanceToken: a token of a previous tetherd instance (its key
// died with it) is invalid_token with its own reason, unknown_key, not a
// forgery's; a token of this instance's key without a session stays
// unknown_session.
func TestPreviousInstanceToken(t *testing.T) {
	ctx := context.Background()
	before, _ := session.NewTestManager(t, nil)
	now, _ := session.NewTestManager(t, nil)
	old, _ := login(t, before, alice)
	_, err := now.Validate(ctx, old, alice)
	requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherKey)

	tok, info := login(t, now, alice)
	require.NoError(t, now.Revoke(ctx, info.ID))
	now.Sweep(ctx)
	_, err = now.Validate(ctx, tok, bob)
	requireRefusal(t, err, api.CodeInvalidToken, session.ReasonOtherIdentity)
}
