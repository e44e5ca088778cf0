package etcdstore

import (
	"errors"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// TestCutOffReplicaFailsClosed: a replica that can reach only one etcd
// member is cut off when that member dies. It refuses (unavailable) within
// MaxStaleness, so a revocation that answered meanwhile on another replica
// is never undone by its stale view; it serves again, without a restart,
// once the member is back, and then refuses the revoked token as ended.
// The replica that still reaches a quorum serves throughout (member loss).
func TestCutOffReplicaFailsClosed(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	a := f.start(t)
	cut := f.start(t, withEndpoints(f.c.Endpoint(2)))
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	tok, info, err := a.m.Login(ctx, alice)
	require.NoError(t, err)
	_, err = cut.m.Validate(ctx, tok, alice)
	require.NoError(t, err)

	f.c.KillMember(t, 2)
	killed := time.Now()
	require.Eventually(t, func() bool { return cut.m.Fresh() != nil }, within, 5*time.Millisecond)
	// The bound: MaxStaleness from the start of its last proof, which
	// began before the kill; one probe period and scheduling on top.
	require.Less(t, time.Since(killed), 3*time.Second, "the cut-off replica took too long to refuse")

	// The other replica still reaches a quorum (2 of 3) and revokes (if
	// the member was etcd's leader, after the election).
	a.waitFresh(t)
	require.NoError(t, a.m.Revoke(ctx, info.ID))
	_, err = cut.m.Validate(ctx, tok, alice)
	requireCode(t, err, api.CodeUnavailable, "the cut-off replica must refuse, not serve its stale view")
	var se *session.Error
	require.True(t, errors.As(err, &se))
	require.Positive(t, se.RetryAfter, "a 503 carries Retry-After")
	_, _, err = cut.m.Login(ctx, alice)
	requireCode(t, err, api.CodeUnavailable)

	f.c.StartMember(t, 2)
	cut.waitFresh(t)
	_, err = cut.m.Validate(ctx, tok, alice)
	requireCode(t, err, api.CodeSessionEnded, "back in touch, it knows the revocation")
}

// TestQuorumLossFailsClosed: with two of three members gone every replica
// refuses; once they are back, every replica serves again without a
// restart and no session was lost.
func TestQuorumLossFailsClosed(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rs := []*replica{f.start(t), f.start(t)}
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	tok, _, err := rs[0].m.Login(ctx, alice)
	require.NoError(t, err)

	f.c.KillMember(t, 0)
	f.c.KillMember(t, 1)
	for i, r := range rs {
		require.Eventually(t, func() bool { return r.m.Fresh() != nil }, within, 5*time.Millisecond, "replica %d", i)
		_, err := r.m.Validate(ctx, tok, alice)
		requireCode(t, err, api.CodeUnavailable, "replica %d without quorum", i)
	}
	f.c.StartMember(t, 0)
	f.c.StartMember(t, 1)
	for i, r := range rs {
		r.waitFresh(t)
		_, err := r.m.Validate(ctx, tok, alice)
		require.NoError(t, err, "replica %d after the quorum came back", i)
	}
}

// TestFollowerLossKeepsServing: a replica connected to every member keeps
// serving, writes included, when an etcd member that is not the leader dies.
func TestFollowerLossKeepsServing(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	a := f.start(t)
	cli := f.c.Client(t, f.svid)
	follower := -1
	for i := range f.c.Size() {
		st, err := cli.Status(ctx, f.c.Endpoint(i))
		require.NoError(t, err)
		if st.Leader != st.Header.MemberId {
			follower = i
			break
		}
	}
	require.GreaterOrEqual(t, follower, 0, "no follower found")
	f.c.KillMember(t, follower)
	killed := time.Now()
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	// Load for three times MaxStaleness: long enough for a replica whose
	// proofs stalled on the dead member to turn stale.
	for i := 0; time.Since(killed) < 3*time.Second; i++ {
		tok, info, err := a.m.Login(ctx, alice)
		require.NoError(t, err, "login %d after member %d died", i, follower)
		_, err = a.m.Validate(ctx, tok, alice)
		require.NoError(t, err, "use %d", i)
		require.NoError(t, a.m.Revoke(ctx, info.ID), "revoke %d", i)
	}
}

// TestLostAnswers: a write whose answer is lost with the member that took
// it (it applied, the client saw Unavailable, as when a member dies under
// the call) is sent again through another member, and the store tells its
// own applied write from another's: the login, the rebind and the revoke
// each succeed once, exactly as if nothing had been lost.
func TestLostAnswers(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rs := []*replica{f.start(t), f.start(t)}
	a := rs[0]
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	sessionsOf := func(r *replica) int {
		infos, err := r.m.List(&alice.ID)
		require.NoError(t, err)
		return len(infos)
	}

	a.st.loseAnswers.Store(1)
	tok, info, err := a.m.Login(ctx, alice)
	require.NoError(t, err, "the login whose answer was lost")
	require.Zero(t, a.st.loseAnswers.Load(), "the answer was lost")
	for i, r := range rs {
		_, err := r.m.Validate(ctx, tok, alice)
		require.NoError(t, err, "replica %d", i)
		require.Equal(t, 1, sessionsOf(r), "replica %d: one session, not two", i)
	}

	alice2, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	a.st.loseAnswers.Store(1)
	tok2, info2, err := a.m.Rebind(ctx, tok, alice2)
	require.NoError(t, err, "the rebind whose answer was lost")
	require.Zero(t, a.st.loseAnswers.Load(), "the answer was lost")
	require.Equal(t, info.ID, info2.ID)
	for i, r := range rs {
		_, err := r.m.Validate(ctx, tok, alice)
		requireCode(t, err, api.CodeSessionEnded, "replica %d: the replaced token", i)
		_, err = r.m.Validate(ctx, tok2, alice2)
		require.NoError(t, err, "replica %d: the new token", i)
	}

	a.st.loseAnswers.Store(1)
	require.NoError(t, a.m.Revoke(ctx, info.ID), "the revoke whose answer was lost")
	require.Zero(t, a.st.loseAnswers.Load(), "the answer was lost")
	for i, r := range rs {
		_, err := r.m.Validate(ctx, tok2, alice2)
		requireCode(t, err, api.CodeSessionEnded, "replica %d after the revoke", i)
		require.Zero(t, sessionsOf(r), "replica %d", i)
	}
	require.InDelta(t, 3, promtest.ToFloat64(a.st.m.lost), 0, "tether_store_lost_answers_total")
	// The counters count the one session that was, and no more: a login
	// at a per-identity cap of 1 is let in.
	b := f.start(t, withSessionConfig(func(c *session.Config) { c.MaxSessionsPerIdentity = 1 }))
	_, _, err = b.m.Login(ctx, alice)
	require.NoError(t, err, "the per-identity count went back to 0")
}
