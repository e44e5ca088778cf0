package session

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testutil"
)

// TestCommitAfterReplace: with the in-process store a use is recorded on
// the entry its check read, without looking the session up again; a use
// committed after a change replaced that entry (an approval, a rebind: any
// Update) still moves the session's last use, and one committed after the
// session ended changes nothing.
func TestCommitAfterReplace(t *testing.T) {
	m, clk, tok, info := aliceLoggedIn(t)
	require.NotNil(t, m.mem, "the default store is the in-process one")
	ctx := context.Background()

	clk.Add(time.Minute)
	u, err := m.Check(ctx, tok, useAlice)
	require.NoError(t, err)
	require.NotNil(t, u.e, "the check hands over the entry it read")
	cur, ok := m.store.ByID(info.ID)
	require.True(t, ok)
	require.NoError(t, m.store.Update(ctx, cur, cur, nil)) // a new entry takes the session's place
	u.Commit()
	got, ok := m.Get(info.ID)
	require.True(t, ok)
	require.True(t, clk.Now().Equal(got.LastUsedAt), "the use reached the entry that replaced the one checked: %v", got.LastUsedAt)

	clk.Add(time.Minute)
	u, err = m.Check(ctx, tok, useAlice)
	require.NoError(t, err)
	require.NoError(t, m.Revoke(ctx, info.ID))
	u.Commit()
	_, ok = m.Get(info.ID)
	require.False(t, ok, "a use committed after the end brings nothing back")
}

// TestCommitDuringReplace: a use committed on the old entry while a
// change is replacing it (the new entry is in the indexes, the old one not
// yet marked gone) is carried over to the new entry.
func TestCommitDuringReplace(t *testing.T) {
	m, clk, tok, info := aliceLoggedIn(t)
	ctx := context.Background()
	clk.Add(time.Minute)
	u, err := m.Check(ctx, tok, useAlice)
	require.NoError(t, err)
	cur, ok := m.store.ByID(info.ID)
	require.True(t, ok)
	m.mem.replacing = u.Commit
	require.NoError(t, m.store.Update(ctx, cur, cur, nil))
	m.mem.replacing = nil
	r, ok := m.store.ByID(info.ID)
	require.True(t, ok)
	require.Equal(t, u.at, r.LastUsed, "the use committed during the replacement")
}

// TestCommitRacesReplace: uses committed while the entry their check read
// is being replaced are never lost, whichever comes first (under -race).
func TestCommitRacesReplace(t *testing.T) {
	m, clk, tok, info := aliceLoggedIn(t)
	ctx := context.Background()
	for range 500 {
		clk.Add(time.Millisecond)
		u, err := m.Check(ctx, tok, useAlice)
		require.NoError(t, err)
		cur, ok := m.store.ByID(info.ID)
		require.True(t, ok)
		var wg sync.WaitGroup
		wg.Go(func() { _ = m.store.Update(ctx, cur, cur, nil) })
		u.Commit()
		wg.Wait()
		r, ok := m.store.ByID(info.ID)
		require.True(t, ok)
		require.Equal(t, u.at, r.LastUsed, "the use committed during a replacement")
	}
}

// useAlice is the admin of the tests of this file.
var useAlice = Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/alice"), Fingerprint: "fp-alice"}

// aliceLoggedIn is a test Manager, its clock, and a session of useAlice's
// with its token.
func aliceLoggedIn(t *testing.T) (*Manager, *testutil.Clock, string, Info) {
	t.Helper()
	m, clk := NewTestManager(t, nil)
	tok, info, err := m.Login(context.Background(), useAlice)
	require.NoError(t, err)
	return m, clk, tok, info
}
