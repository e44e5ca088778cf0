package session_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

var (
	issuer = spiffeid.RequireFromString("spiffe://example.org/tetherd")
	alice  = session.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/alice"), Fingerprint: "fp-alice-1"}
	alice2 = session.Peer{ID: alice.ID, Fingerprint: "fp-alice-2"} // alice after rotation
	bob    = session.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/bob"), Fingerprint: "fp-bob"}
)

func login(t *testing.T, m *session.Manager, p session.Peer) (string, session.Info) {
	t.Helper()
	tok, info, err := m.Login(context.Background(), p)
	require.NoError(t, err)
	return tok, info
}

func requireCode(t *testing.T, err error, code api.Code) {
	t.Helper()
	require.Error(t, err)
	se, ok := err.(*session.Error)
	require.Truef(t, ok, "error %T %v is not a *session.Error", err, err)
	require.Equal(t, code, se.Code, "reason %s", se.Reason)
}

func TestNewManagerConfig(t *testing.T) {
	_, err := session.NewManager(session.Config{})
	require.ErrorContains(t, err, "issuer")
	_, err = session.NewManager(session.Config{Issuer: issuer, TTL: -1})
	require.ErrorContains(t, err, "negative")
}

func TestTokenClaims(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	tok, info := login(t, m, alice)

	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	var header map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &header))
	require.Equal(t, "EdDSA", header["alg"])
	require.NotEmpty(t, header["kid"])

	var c map[string]any
	raw, err = base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &c))
	require.Equal(t, issuer.String(), c["iss"])
	require.Equal(t, issuer.String(), c["aud"])
	require.Equal(t, alice.ID.String(), c["sub"])
	require.Equal(t, info.ID, c["jti"])
	require.EqualValues(t, clk.Now().Unix(), c["iat"])
	require.EqualValues(t, info.ExpiresAt.Unix(), c["exp"])
	require.Equal(t, map[string]any{"x5t#S256": alice.Fingerprint}, c["cnf"])

	require.Equal(t, clk.Now().Add(time.Hour), info.ExpiresAt)
	require.Equal(t, alice.Fingerprint, info.Fingerprint)
	require.Equal(t, alice.ID, info.SPIFFEID)
}

func TestSessionIDs(t *testing.T) {
	m, _ := session.NewTestManager(t, func(c *session.Config) { c.MaxSessionsPerIdentity = 1000 })
	seen := map[string]bool{}
	for range 200 {
		_, info := login(t, m, alice)
		require.Len(t, info.ID, 26, "26 base32 characters carry 128 bits")
		require.False(t, strings.HasPrefix(info.ID, "-"))
		require.False(t, seen[info.ID])
		seen[info.ID] = true
	}
}

func TestValidate(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	ctx := context.Background()
	tok, info := login(t, m, alice)
	bobTok, _ := login(t, m, bob)

	clk.Add(time.Minute)
	got, err := m.Validate(ctx, tok, alice)
	require.NoError(t, err)
	require.Equal(t, info.ID, got.ID)
	require.Equal(t, clk.Now(), got.LastUsedAt, "a use moves last_used_at")
	require.Equal(t, clk.Now().Add(10*time.Minute), got.IdleExpiresAt)

	other, _ := session.NewTestManager(t, nil) // another tetherd instance: its own key
	foreign, _, err := other.Login(ctx, alice)
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		token string
		peer  session.Peer
		code  api.Code
	}{
		{"fail/other-identity", tok, bob, api.CodeInvalidToken},
		{"fail/other-identity-other-leaf", bobTok, alice2, api.CodeInvalidToken},
		{"fail/rotated-leaf", tok, alice2, api.CodeCertificateRotated},
		{"fail/garbage", "not-a-token", alice, api.CodeInvalidToken},
		{"fail/empty", "", alice, api.CodeInvalidToken},
		{"fail/tampered", tok[:len(tok)-4] + "AAAA", alice, api.CodeInvalidToken},
		{"fail/truncated", tok[:len(tok)/2], alice, api.CodeInvalidToken},
		{"fail/huge", strings.Repeat("a", session.MaxTokenBytes+1), alice, api.CodeInvalidToken},
		{"fail/foreign-key", foreign, alice, api.CodeInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Validate(ctx, tc.token, tc.peer)
			requireCode(t, err, tc.code)
		})
	}
	// None of the refusals ended or damaged alice's session.
	_, err = m.Validate(ctx, tok, alice)
	require.NoError(t, err)
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	t.Run("idle", func(t *testing.T) {
		m, clk := session.NewTestManager(t, nil)
		tok, _ := login(t, m, alice)
		clk.Add(9 * time.Minute)
		_, err := m.Validate(ctx, tok, alice)
		require.NoError(t, err)
		clk.Add(9 * time.Minute) // 18 minutes since login, 9 since last use
		_, err = m.Validate(ctx, tok, alice)
		require.NoError(t, err)
		clk.Add(10 * time.Minute)
		_, err = m.Validate(ctx, tok, alice)
		requireCode(t, err, api.CodeSessionEnded)
		require.Zero(t, m.Len())
		// Once gone, still session_ended for the owner, invalid for others.
		_, err = m.Validate(ctx, tok, alice)
		requireCode(t, err, api.CodeSessionEnded)
		_, err = m.Validate(ctx, tok, bob)
		requireCode(t, err, api.CodeInvalidToken)
	})
	t.Run("absolute", func(t *testing.T) {
		m, clk := session.NewTestManager(t, nil)
		tok, _ := login(t, m, alice)
		for range 6 { // used every 9 minutes: never idle, still ends at 1h
			clk.Add(9 * time.Minute)
			_, err := m.Validate(ctx, tok, alice)
			require.NoError(t, err)
		}
		clk.Add(9 * time.Minute)
		_, err := m.Validate(ctx, tok, alice)
		requireCode(t, err, api.CodeSessionEnded)
	})
	t.Run("sweep", func(t *testing.T) {
		m, clk := session.NewTestManager(t, nil)
		login(t, m, alice)
		login(t, m, bob)
		require.Equal(t, 2, m.Len())
		require.Zero(t, m.Sweep(ctx))
		clk.Add(11 * time.Minute)
		require.Equal(t, 2, m.Sweep(ctx))
		require.Zero(t, m.Len())
	})
}

func TestRebind(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	ctx := context.Background()
	tok, info := login(t, m, alice)
	clk.Add(time.Minute)

	_, _, err := m.Rebind(ctx, tok, alice)
	requireCode(t, err, api.CodeBadRequest) // same leaf: nothing to rebind
	_, _, err = m.Rebind(ctx, tok, bob)
	requireCode(t, err, api.CodeInvalidToken) // another identity can never take it

	// CheckRebind answers as Rebind would, and changes nothing.
	requireCode(t, m.CheckRebind(ctx, tok, alice), api.CodeBadRequest)
	requireCode(t, m.CheckRebind(ctx, tok, bob), api.CodeInvalidToken)
	require.NoError(t, m.CheckRebind(ctx, tok, alice2))
	_, err = m.Validate(ctx, tok, alice)
	require.NoError(t, err, "a CheckRebind that would succeed leaves the binding as it was")

	newTok, got, err := m.Rebind(ctx, tok, alice2)
	require.NoError(t, err)
	require.NotEqual(t, tok, newTok)
	require.Equal(t, info.ID, got.ID)
	require.Equal(t, info.ExpiresAt, got.ExpiresAt, "rebind never moves the absolute end")
	require.Equal(t, alice2.Fingerprint, got.Fingerprint)

	_, err = m.Validate(ctx, newTok, alice2)
	require.NoError(t, err)
	_, err = m.Validate(ctx, newTok, alice)
	requireCode(t, err, api.CodeCertificateRotated) // the old leaf is dead for it
	_, err = m.Validate(ctx, tok, alice)
	requireCode(t, err, api.CodeSessionEnded) // the old token is dead
	_, err = m.Validate(ctx, tok, alice2)
	requireCode(t, err, api.CodeSessionEnded)
	_, _, err = m.Rebind(ctx, tok, alice2)
	requireCode(t, err, api.CodeSessionEnded)
	require.Equal(t, 1, m.Len())
}

// TestRebindBackIsANewToken: a session rebound to a leaf it was bound to
// before, within the same second (leaves without a NotBefore allow it), gets
// a token of its own: the one the first rebind killed stays dead although
// every claim it carried (jti, iat, exp, cnf) is the same again.
func TestRebindBackIsANewToken(t *testing.T) {
	m, _ := session.NewTestManager(t, nil) // its clock stands still
	ctx := context.Background()
	first, _ := login(t, m, alice)
	second, _, err := m.Rebind(ctx, first, alice2)
	require.NoError(t, err)
	third, _, err := m.Rebind(ctx, second, alice)
	require.NoError(t, err)
	require.NotEqual(t, first, third)
	_, err = m.Validate(ctx, first, alice)
	requireCode(t, err, api.CodeSessionEnded)
	_, err = m.Validate(ctx, third, alice)
	require.NoError(t, err)
}

// raceStore is a MemoryStore whose next races Updates first let another
// change of the same record win, one that keeps its binding (as a
// concurrent approval or a recorded use would): the compare-and-swap asked
// for then loses.
type raceStore struct {
	*session.MemoryStore
	races atomic.Int32
}

func (s *raceStore) Update(ctx context.Context, cur, next session.Record, t *session.Tombstone) error {
	if s.races.Add(-1) >= 0 {
		other := cur
		other.LastUsed++
		if err := s.MemoryStore.Update(ctx, cur, other, nil); err != nil {
			return err
		}
	}
	return s.MemoryStore.Update(ctx, cur, next, t)
}

// TestRebindAfterAnotherChange: a rebind that loses its write to a change
// that kept the binding (an approval, a use) is tried again on the session
// as it now is, up to four tries; a session that keeps changing is 503
// unavailable (retry), and nothing changed.
func TestRebindAfterAnotherChange(t *testing.T) {
	ctx := context.Background()
	for _, races := range []int32{1, 3, 4} {
		t.Run(fmt.Sprint(races), func(t *testing.T) {
			st := &raceStore{MemoryStore: session.NewMemoryStore(0, 0)}
			m, clk := session.NewTestManager(t, func(c *session.Config) { c.Store = st })
			tok, info := login(t, m, alice)
			clk.Add(time.Minute)
			st.races.Store(races)
			newTok, got, err := m.Rebind(ctx, tok, alice2)
			if races >= 4 {
				requireCode(t, err, api.CodeUnavailable)
				var se *session.Error
				require.ErrorAs(t, err, &se)
				require.Equal(t, session.ReasonConflict, se.Reason)
				require.Positive(t, se.RetryAfter)
				_, err = m.Validate(ctx, tok, alice)
				require.NoError(t, err, "a refused rebind changed the binding")
				return
			}
			require.NoError(t, err)
			require.Equal(t, info.ID, got.ID)
			_, err = m.Validate(ctx, newTok, alice2)
			require.NoError(t, err)
			_, err = m.Validate(ctx, tok, alice)
			requireCode(t, err, api.CodeSessionEnded)
		})
	}
}

func TestRevocation(t *testing.T) {
	m, _ := session.NewTestManager(t, nil)
	ctx := context.Background()
	a1, i1 := login(t, m, alice)
	a2, _ := login(t, m, alice)
	b1, bi := login(t, m, bob)

	require.NoError(t, m.Revoke(ctx, i1.ID))
	requireCode(t, m.Revoke(ctx, i1.ID), api.CodeNotFound)
	requireCode(t, m.Revoke(ctx, "nosuchsession"), api.CodeNotFound)
	_, err := m.Validate(ctx, a1, alice)
	requireCode(t, err, api.CodeSessionEnded)

	require.Equal(t, 1, must(m.RevokeIdentity(ctx, alice.ID)))
	require.Equal(t, 0, must(m.RevokeIdentity(ctx, alice.ID)))
	_, err = m.Validate(ctx, a2, alice)
	requireCode(t, err, api.CodeSessionEnded)

	_, err = m.Validate(ctx, b1, bob)
	require.NoError(t, err)
	require.NoError(t, m.Logout(ctx, bi.ID))
	_, err = m.Validate(ctx, b1, bob)
	requireCode(t, err, api.CodeSessionEnded)
	require.Zero(t, m.Len())
}

func TestList(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	_, a := login(t, m, alice)
	clk.Add(time.Second)
	_, b := login(t, m, bob)
	clk.Add(time.Second)
	_, a2 := login(t, m, alice)

	all := must(m.List(nil))
	require.Equal(t, []string{a.ID, b.ID, a2.ID}, ids(all), "oldest first")
	require.Equal(t, []string{a.ID, a2.ID}, ids(must(m.List(&alice.ID))))
	nobody := spiffeid.RequireFromString("spiffe://example.org/nobody")
	require.Empty(t, must(m.List(&nobody)))
	got, ok := m.Get(b.ID)
	require.True(t, ok)
	require.Equal(t, bob.ID, got.SPIFFEID)
}

func ids(infos []session.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.ID
	}
	return out
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("per-identity", func(t *testing.T) {
		m, _ := session.NewTestManager(t, func(c *session.Config) { c.MaxSessionsPerIdentity = 2 })
		login(t, m, alice)
		_, i2 := login(t, m, alice)
		_, _, err := m.Login(ctx, alice)
		requireCode(t, err, api.CodeSessionLimit)
		login(t, m, bob) // another identity is not affected
		require.NoError(t, m.Revoke(ctx, i2.ID))
		login(t, m, alice) // room again
	})
	t.Run("total", func(t *testing.T) {
		m, _ := session.NewTestManager(t, func(c *session.Config) { c.MaxSessions = 2 })
		login(t, m, alice)
		login(t, m, bob)
		_, _, err := m.Login(ctx, alice2)
		requireCode(t, err, api.CodeSessionLimit)
		require.Equal(t, 2, m.Len())
	})
	// The caps are of live sessions: sessions that lapsed (idle or expired)
	// but that no sweep has removed yet do not hold a login back (with
	// replicas, after every replica was down while they lapsed, etcd's
	// counters still count them).
	t.Run("per-identity-lapsed", func(t *testing.T) {
		m, clk := session.NewTestManager(t, func(c *session.Config) { c.MaxSessionsPerIdentity = 2 })
		login(t, m, alice)
		_, i2 := login(t, m, alice)
		login(t, m, bob)
		clk.Add(9 * time.Minute)
		tok2, _ := login(t, m, bob) // bob's first one idles out below, this one is used
		_, err := m.Validate(ctx, tok2, bob)
		require.NoError(t, err)
		clk.Add(2 * time.Minute) // alice's two and bob's first are idle now; no sweep ran
		_, i3 := login(t, m, alice)
		_, ok := m.Get(i2.ID)
		require.False(t, ok, "the lapsed sessions were ended to make room")
		_, ok = m.Get(i3.ID)
		require.True(t, ok)
		login(t, m, alice)
		_, _, err = m.Login(ctx, alice)
		requireCode(t, err, api.CodeSessionLimit) // two live ones: the cap holds
		require.Equal(t, 4, m.Len(), "alice's two, bob's two (his lapsed one stays for the sweep)")
	})
	t.Run("total-lapsed", func(t *testing.T) {
		m, clk := session.NewTestManager(t, func(c *session.Config) { c.MaxSessions = 2 })
		login(t, m, alice)
		login(t, m, bob)
		clk.Add(time.Hour + time.Second) // both past their absolute end
		login(t, m, alice2)
		require.Equal(t, 1, m.Len())
		login(t, m, bob)
		_, _, err := m.Login(ctx, alice2)
		requireCode(t, err, api.CodeSessionLimit)
	})
	t.Run("rate", func(t *testing.T) {
		m, clk := session.NewTestManager(t, func(c *session.Config) { c.LoginRate = 1; c.LoginBurst = 3 })
		for range 3 {
			login(t, m, alice)
		}
		_, _, err := m.Login(ctx, alice)
		requireCode(t, err, api.CodeRateLimited)
		require.Greater(t, err.(*session.Error).RetryAfter, time.Duration(0))
		login(t, m, bob) // per identity
		clk.Add(time.Second)
		login(t, m, alice)
	})
}

func TestIntrospect(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	ctx := context.Background()
	tok, info := login(t, m, alice)
	clk.Add(time.Minute)
	got, ok := m.Introspect(ctx, tok, alice.Fingerprint)
	require.True(t, ok)
	require.Equal(t, info.ID, got.ID)
	require.Equal(t, clk.Now(), got.LastUsedAt)
	_, ok = m.Introspect(ctx, tok, alice2.Fingerprint)
	require.False(t, ok, "bound to another leaf")
	_, ok = m.Introspect(ctx, "garbage", alice.Fingerprint)
	require.False(t, ok)
	clk.Add(11 * time.Minute)
	_, ok = m.Introspect(ctx, tok, alice.Fingerprint)
	require.False(t, ok, "idle")
}

func TestRestartEndsEverySession(t *testing.T) {
	ctx := context.Background()
	m1, _ := session.NewTestManager(t, nil)
	tok, _ := login(t, m1, alice)
	m2, _ := session.NewTestManager(t, nil) // same issuer, new process: new key, empty store
	_, err := m2.Validate(ctx, tok, alice)
	requireCode(t, err, api.CodeInvalidToken)
}

func TestStoreKeepsNoToken(t *testing.T) {
	m, _ := session.NewTestManager(t, nil)
	tok, info := login(t, m, alice)
	var found session.Record
	m.Store().Range(func(r session.Record) bool { found = r; return false })
	require.NotNil(t, found)
	require.Equal(t, info.ID, found.ID)
	// The record holds the token's SHA-256, never the token.
	require.NotContains(t, found.Binding.Fingerprint, tok)
	require.Len(t, found.Binding.Token, 32)
}

// TestRebindOnlyToNewerLeaf (finding 4): once a session is rebound to a new
// leaf, the previous leaf can never take it back, not even with the new
// token; only a strictly newer leaf may rebind it.
func TestRebindOnlyToNewerLeaf(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	ctx := context.Background()
	t0 := clk.Now().Add(-time.Minute).Truncate(time.Second)
	leafA := session.Peer{ID: alice.ID, Fingerprint: "fp-a", NotBefore: t0}
	leafB := session.Peer{ID: alice.ID, Fingerprint: "fp-b", NotBefore: t0.Add(time.Minute)}
	tokA, info := login(t, m, leafA)

	tokB, _, err := m.Rebind(ctx, tokA, leafB)
	require.NoError(t, err)

	// The old leaf with the new token: refused, and the session stays on B.
	_, _, err = m.Rebind(ctx, tokB, leafA)
	requireRefusal(t, err, api.CodeBadRequest, session.ReasonOlderLeaf)
	// The old leaf with its old token: that token is superseded.
	_, _, err = m.Rebind(ctx, tokA, leafA)
	requireRefusal(t, err, api.CodeSessionEnded, session.ReasonSuperseded)
	got, err := m.Validate(ctx, tokB, leafB)
	require.NoError(t, err)
	require.Equal(t, leafB.Fingerprint, got.Fingerprint)
	_, err = m.Validate(ctx, tokB, leafA)
	requireCode(t, err, api.CodeCertificateRotated)

	for _, tc := range []struct {
		name string
		peer session.Peer
	}{
		{"fail/same-not-before", session.Peer{ID: alice.ID, Fingerprint: "fp-tie", NotBefore: leafB.NotBefore}},
		{"fail/older-than-bound", session.Peer{ID: alice.ID, Fingerprint: "fp-old", NotBefore: t0.Add(30 * time.Second)}},
		{"fail/unknown-not-before", session.Peer{ID: alice.ID, Fingerprint: "fp-unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := m.Rebind(ctx, tokB, tc.peer)
			requireRefusal(t, err, api.CodeBadRequest, session.ReasonOlderLeaf)
			_, err = m.Validate(ctx, tokB, leafB)
			require.NoError(t, err, "a refused rebind leaves the session as it was")
		})
	}
	_, _, err = m.Rebind(ctx, tokB, leafB)
	requireRefusal(t, err, api.CodeBadRequest, session.ReasonSameLeaf)

	leafC := session.Peer{ID: alice.ID, Fingerprint: "fp-c", NotBefore: leafB.NotBefore.Add(time.Second)}
	tokC, gotC, err := m.Rebind(ctx, tokB, leafC)
	require.NoError(t, err)
	require.Equal(t, info.ID, gotC.ID)
	_, err = m.Validate(ctx, tokC, leafC)
	require.NoError(t, err)
	for _, p := range []session.Peer{leafA, leafB} {
		_, _, err = m.Rebind(ctx, tokC, p)
		requireRefusal(t, err, api.CodeBadRequest, session.ReasonOlderLeaf)
	}
	require.Equal(t, 1, m.Len())
}

// TestRebindUnknownNotBefore: a session whose leaf's NotBefore is unknown
// (an embedder that does not set Peer.NotBefore) rebinds to any other leaf;
// once bound to a leaf with a known NotBefore, ordering holds from then on.
func TestRebindUnknownNotBefore(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	ctx := context.Background()
	tok, _ := login(t, m, alice) // NotBefore unknown
	tok, _, err := m.Rebind(ctx, tok, alice2)
	require.NoError(t, err)
	known := session.Peer{ID: alice.ID, Fingerprint: "fp-known", NotBefore: clk.Now()}
	tok, _, err = m.Rebind(ctx, tok, known)
	require.NoError(t, err)
	_, _, err = m.Rebind(ctx, tok, alice)
	requireRefusal(t, err, api.CodeBadRequest, session.ReasonOlderLeaf)
}

// TestCheckCommit (finding 7): Check does not count as a use of the session;
// only Commit does, at the time of the check. A session whose checks are
// never committed (every request failed) idles out on schedule.
func TestCheckCommit(t *testing.T) {
	m, clk := session.NewTestManager(t, nil) // idle timeout 10m
	ctx := context.Background()
	tok, info := login(t, m, alice)

	clk.Add(4 * time.Minute)
	checked := clk.Now()
	u, err := m.Check(ctx, tok, alice)
	require.NoError(t, err)
	require.Equal(t, info.ID, u.Info.ID)
	require.Equal(t, checked, u.Info.LastUsedAt, "Info shows the use as committed")
	require.Equal(t, checked.Add(10*time.Minute), u.Info.IdleExpiresAt)
	got, _ := m.Get(info.ID)
	require.Equal(t, info.CreatedAt, got.LastUsedAt, "not used until committed")

	clk.Add(time.Minute)
	u.Commit() // late: records the time of the check, not of the commit
	got, _ = m.Get(info.ID)
	require.Equal(t, checked, got.LastUsedAt)
	u.Commit()
	got, _ = m.Get(info.ID)
	require.Equal(t, checked, got.LastUsedAt, "a second commit changes nothing")

	// Failed requests only: checked every minute, never committed. The
	// session ends ten minutes after its last committed use.
	for range 8 {
		clk.Add(time.Minute)
		_, err := m.Check(ctx, tok, alice)
		require.NoError(t, err)
	}
	clk.Add(time.Minute) // 10m after the committed use
	_, err = m.Check(ctx, tok, alice)
	requireRefusal(t, err, api.CodeSessionEnded, session.ReasonIdle)

	// Committing after the session ended does not bring it back.
	tok2, info2 := login(t, m, alice)
	u, err = m.Check(ctx, tok2, alice)
	require.NoError(t, err)
	require.NoError(t, m.Revoke(ctx, info2.ID))
	u.Commit()
	_, ok := m.Get(info2.ID)
	require.False(t, ok)
	_, err = m.Check(ctx, tok2, alice)
	requireCode(t, err, api.CodeSessionEnded)

	session.Use{}.Commit() // the zero Use: nothing to do
}

// TestValidateCommits: Validate is Check and Commit at once.
func TestValidateCommits(t *testing.T) {
	m, clk := session.NewTestManager(t, nil)
	ctx := context.Background()
	tok, info := login(t, m, alice)
	clk.Add(3 * time.Minute)
	v, err := m.Validate(ctx, tok, alice)
	require.NoError(t, err)
	got, _ := m.Get(info.ID)
	require.Equal(t, clk.Now(), got.LastUsedAt)
	require.Equal(t, got, v)
}

// TestLoginLimitUnderSweep: the sweeper forgets full login buckets while
// logins take tokens from them; with the clock standing still and a burst of
// one, no identity ever gets a second login, however the two interleave (a
// bucket dropped between its lookup and its use would hand out a fresh one).
func TestLoginLimitUnderSweep(t *testing.T) {
	m, _ := session.NewTestManager(t, func(c *session.Config) {
		c.LoginRate, c.LoginBurst, c.MaxSessions = rate.Every(time.Hour), 1, 1<<20
	})
	ctx := context.Background()
	stop := make(chan struct{})
	var sweeps sync.WaitGroup
	sweeps.Add(1)
	go func() {
		defer sweeps.Done()
		for {
			select {
			case <-stop:
				return
			default:
				m.Sweep(ctx)
			}
		}
	}()
	const ids = 200
	var ok [ids]atomic.Int32
	var wg sync.WaitGroup
	for i := range ids {
		p := session.Peer{ID: spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/admin/u%d", i)), Fingerprint: "fp"}
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := m.Login(ctx, p); err == nil {
					ok[i].Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	sweeps.Wait()
	for i := range ids {
		require.Equal(t, int32(1), ok[i].Load(), "identity %d logged in %d times with a burst of 1", i, ok[i].Load())
	}
}

// must returns v, failing loudly on err: for calls a memory store never
// fails (it is always fresh and never unreachable).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestConfigTombstoneCaps: a store made for a Manager (the memory store it makes
// itself, tetherd's etcd store) keeps the caps its Config sets, or 4 times
// the session caps.
func TestConfigTombstoneCaps(t *testing.T) {
	caps := func(c session.Config) [2]int { total, per := c.TombstoneCaps(); return [2]int{total, per} }
	require.Equal(t, [2]int{
		session.DefaultTombstonesPerSession * session.DefaultMaxSessions,
		session.DefaultTombstonesPerSession * session.DefaultMaxSessionsPerIdentity,
	}, caps(session.Config{}))
	require.Equal(t, [2]int{4 * 100, 4 * 3}, caps(session.Config{MaxSessions: 100, MaxSessionsPerIdentity: 3}))
	require.Equal(t, [2]int{7, 2}, caps(session.Config{MaxSessions: 100, MaxTombstones: 7, MaxTombstonesPerIdentity: 2}))
}
