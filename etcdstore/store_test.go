package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testetcd"
	"github.com/tetherproject/tether/internal/testpki"
	tu "github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

const tetherdID = "spiffe://example.org/tetherd"

// within bounds every wait of these tests for an event (a replica turning
// fresh, stale, or seeing a write): generous, for two busy cores under -race.
const within = 30 * time.Second

// replica is one tetherd replica without its HTTP layer: a Manager on an
// etcd store.
type replica struct {
	st *Store
	m  *session.Manager
}

type fixture struct {
	c      *testetcd.Cluster
	ca     *testpki.CA
	svid   *x509svid.SVID
	prefix string
}

// newFixture starts a 3-member etcd whose CA also issues tetherd's SVID.
func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	ca := testpki.NewCA(tb, "example.org")
	c := testetcd.Start(tb, testetcd.Config{CA: ca})
	return &fixture{c: c, ca: ca, svid: ca.Issue(tb, tetherdID), prefix: "/tether/" + tb.Name() + "/"}
}

type replicaOpt func(*Config, *session.Config)

func withEndpoints(eps ...string) replicaOpt {
	return func(c *Config, _ *session.Config) { c.Endpoints = eps }
}

func withSessionConfig(f func(*session.Config)) replicaOpt {
	return func(_ *Config, sc *session.Config) { f(sc) }
}

// start starts a replica (a Manager on an etcd Store, as tetherd runs it)
// and waits until it is fresh; it is closed when tb ends.
func (f *fixture) start(tb testing.TB, opts ...replicaOpt) *replica {
	tb.Helper()
	key, err := session.NewKey()
	require.NoError(tb, err)
	cfg := Config{
		Endpoints: f.c.Endpoints(), Prefix: f.prefix, TLS: f.c.ClientTLS(f.svid),
		Issuer: spiffeid.RequireFromString(tetherdID), SVID: func() (*x509svid.SVID, error) { return f.svid, nil },
		Bundles: f.ca.Bundle(), Key: key, SessionTTL: time.Hour, MaxStaleness: time.Second,
	}
	scfg := session.Config{Issuer: cfg.Issuer, Key: key, LoginRate: 1000, LoginBurst: 1000}
	for _, o := range opts {
		o(&cfg, &scfg)
	}
	st, err := Open(context.Background(), cfg)
	require.NoError(tb, err)
	scfg.Store = st
	m, err := session.NewManager(scfg)
	require.NoError(tb, err)
	r := &replica{st: st, m: m}
	tb.Cleanup(func() { r.close(tb) })
	r.waitFresh(tb)
	return r
}

// close closes the replica's Manager and Store; closing twice is harmless.
func (r *replica) close(tb testing.TB) {
	require.NoError(tb, r.m.Close())
	require.NoError(tb, r.st.Close())
}

func (r *replica) waitFresh(tb testing.TB) {
	tb.Helper()
	require.Eventually(tb, func() bool { return r.m.Fresh() == nil }, within, 10*time.Millisecond, "replica %s never proved its view fresh", r.st.rid)
}

func peer(t *testing.T, ca *testpki.CA, id string) (session.Peer, *x509svid.SVID) {
	t.Helper()
	s := ca.Issue(t, id)
	leaf := s.Certificates[0]
	return session.Peer{ID: s.ID, Fingerprint: fmt.Sprintf("fp-%x", leaf.Signature[:8]), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, s
}

func requireCode(t *testing.T, err error, code api.Code, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	var se *session.Error
	require.True(t, errors.As(err, &se), "not a session.Error: %v", err)
	require.Equal(t, code, se.Code, msgAndArgs...)
}

// TestReplicasAreOneIssuer: a token from one replica works on all the
// moment its login answers; an end or rebind on any replica is refused on
// all the moment it answers; approvals and caps hold across replicas.
func TestReplicasAreOneIssuer(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	roles := withSessionConfig(func(sc *session.Config) {
		sc.MaxSessionsPerIdentity = 2
		td := spiffeid.RequireTrustDomainFromString("example.org")
		sc.Roles = []session.Role{{Name: "restore", Holders: spiffeid.MatchMemberOf(td), Approvals: 1, Approvers: spiffeid.MatchMemberOf(td)}}
	})
	rs := []*replica{f.start(t, roles), f.start(t, roles), f.start(t, roles)}
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")

	tok, info, err := rs[0].m.Login(ctx, alice)
	require.NoError(t, err)
	for i, r := range rs {
		got, err := r.m.Validate(ctx, tok, alice)
		require.NoError(t, err, "replica %d right after the login answered", i)
		require.Equal(t, info.ID, got.ID)
	}

	t.Run("caps-across-replicas", func(t *testing.T) {
		_, _, err := rs[1].m.Login(ctx, alice)
		require.NoError(t, err)
		_, _, err = rs[2].m.Login(ctx, alice)
		requireCode(t, err, api.CodeSessionLimit, "a third session of alice on a third replica")
	})

	t.Run("revoke-is-exact", func(t *testing.T) {
		require.NoError(t, rs[1].m.Revoke(ctx, info.ID))
		for i, r := range rs {
			_, err := r.m.Validate(ctx, tok, alice)
			requireCode(t, err, api.CodeSessionEnded, "replica %d right after the revoke answered", i)
			_, ok := r.m.Get(info.ID)
			require.False(t, ok, "replica %d still lists it", i)
		}
	})

	t.Run("rebind-everywhere", func(t *testing.T) {
		bob, _ := peer(t, f.ca, "spiffe://example.org/admin/bob")
		tok, _, err := rs[2].m.Login(ctx, bob)
		require.NoError(t, err)
		bob2, _ := peer(t, f.ca, "spiffe://example.org/admin/bob")
		tok2, _, err := rs[0].m.Rebind(ctx, tok, bob2)
		require.NoError(t, err)
		for i, r := range rs {
			_, err := r.m.Validate(ctx, tok, bob)
			requireCode(t, err, api.CodeSessionEnded, "replica %d: the replaced token", i)
			_, err = r.m.Validate(ctx, tok2, bob2)
			require.NoError(t, err, "replica %d: the new token", i)
		}
	})

	t.Run("approval-across-replicas", func(t *testing.T) {
		carol, _ := peer(t, f.ca, "spiffe://example.org/admin/carol")
		dave, _ := peer(t, f.ca, "spiffe://example.org/admin/dave")
		tok, info, err := rs[0].m.Login(ctx, carol, "restore")
		require.NoError(t, err)
		require.Equal(t, api.StatePending, info.State)
		_, err = rs[2].m.Validate(ctx, tok, carol)
		requireCode(t, err, api.CodeApprovalPending)
		_, err = rs[1].m.Decide(ctx, info.ID, dave, true)
		require.NoError(t, err)
		for i, r := range rs {
			got, err := r.m.Validate(ctx, tok, carol)
			require.NoError(t, err, "replica %d after the approval answered", i)
			require.Equal(t, []string{"restore"}, got.Roles)
		}
	})

	t.Run("revoke-identity-and-list", func(t *testing.T) {
		n, err := rs[2].m.RevokeIdentity(ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, 1, n, "alice's second session")
		for i, r := range rs {
			list, err := r.m.List(&alice.ID)
			require.NoError(t, err)
			require.Empty(t, list, "replica %d", i)
		}
	})
}

// TestSessionsOutliveReplicas: a replica's crash or restart ends no
// session; a replica started later loads every session and verifies it
// against the announcements of replicas that are gone.
func TestSessionsOutliveReplicas(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	a := f.start(t)
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	tok, _, err := a.m.Login(ctx, alice)
	require.NoError(t, err)
	// a "crashes": its leases are left to run out, nothing is withdrawn.
	a.st.cancel()
	a.st.wg.Wait()
	b := f.start(t)
	_, err = b.m.Validate(ctx, tok, alice)
	require.NoError(t, err, "a session signed by a replica that is gone")
	c := f.start(t)
	require.NoError(t, b.m.Logout(ctx, must(c.m.Validate(ctx, tok, alice)).ID))
	_, err = c.m.Validate(ctx, tok, alice)
	requireCode(t, err, api.CodeSessionEnded)
}

// TestCapsCountLiveSessionsAfterOutage: sessions that lapsed while no
// replica ran (so no sweep removed them and etcd's counters still count
// them) do not hold back the next login once a replica is back; the cap
// still holds for live sessions.
func TestCapsCountLiveSessionsAfterOutage(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	clk := tu.NewClock(time.Now())
	capped := withSessionConfig(func(sc *session.Config) {
		sc.MaxSessionsPerIdentity, sc.IdleTimeout, sc.SweepInterval, sc.Now = 2, 10*time.Minute, time.Hour, clk.Now
	})
	a := f.start(t, capped)
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	for range 2 {
		_, _, err := a.m.Login(ctx, alice)
		require.NoError(t, err)
	}
	_, _, err := a.m.Login(ctx, alice)
	requireCode(t, err, api.CodeSessionLimit)
	a.st.cancel() // every replica is down
	a.st.wg.Wait()
	clk.Add(11 * time.Minute) // both sessions idle out meanwhile

	b := f.start(t, capped)
	for range 2 {
		_, _, err := b.m.Login(ctx, alice)
		require.NoError(t, err, "the lapsed sessions do not count")
	}
	_, _, err = b.m.Login(ctx, alice)
	requireCode(t, err, api.CodeSessionLimit, "two live sessions: the cap holds")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestForgedWrites: what a writer to etcd without a replica's key writes is
// refused: a record signed by an unannounced key, an announcement signed
// by an SVID of another identity (and records signed by its key), a record
// moved under another ID, a forged tombstone, and the replay of an ended
// session's record.
func TestForgedWrites(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rs := []*replica{f.start(t), f.start(t)}
	cli := f.c.Client(t, f.svid)
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	l := layout{f.prefix}

	mallory, err := session.NewKey()
	require.NoError(t, err)
	forge := func(k *session.Key, id string) (session.Record, string) {
		tok := session.TokenHash{1, 2, 3}
		copy(tok[3:], id)
		r := session.Record{ID: id, Owner: alice.ID, CreatedAt: time.Now().UnixNano(), ExpiresAt: time.Now().Add(time.Hour).UnixNano(),
			Binding: session.Binding{Token: tok, Fingerprint: alice.Fingerprint}}
		val, err := encodeRecord(k, tetherdID, r)
		require.NoError(t, err)
		return r, val
	}
	// barrier: a legitimate login through replica 0, which answers once
	// every replica has applied it, and so everything written before it.
	barrier := func() {
		t.Helper()
		p, _ := peer(t, f.ca, "spiffe://example.org/admin/barrier")
		tok, _, err := rs[0].m.Login(ctx, p)
		require.NoError(t, err)
		for _, r := range rs {
			_, err := r.m.Validate(ctx, tok, p)
			require.NoError(t, err)
		}
	}
	refusedBefore := func(r *replica, kind string) float64 { return testutil.ToFloat64(r.st.m.refused.WithLabelValues(kind)) }
	before := refusedBefore(rs[1], "session")

	// 1. A record signed by a key nobody announced.
	_, val := forge(mallory, "forgedunannounced")
	_, err = cli.Put(ctx, l.session("forgedunannounced"), val)
	require.NoError(t, err)
	// 2. An announcement of mallory's key signed with a genuine SVID of
	// another identity of the trust domain, and a record it signs.
	adminSVID := f.ca.Issue(t, "spiffe://example.org/admin/mallory")
	ann, err := encodeAnnouncement(mallory, tetherdID, "mallory", adminSVID, time.Now())
	require.NoError(t, err)
	_, err = cli.Put(ctx, l.key(mallory.KID()), ann)
	require.NoError(t, err)
	_, val = forge(mallory, "forgedbyadmin")
	_, err = cli.Put(ctx, l.session("forgedbyadmin"), val)
	require.NoError(t, err)
	// 3. An SVID of tetherd's ID from another trust domain's CA.
	otherCA := testpki.NewCA(t, "example.org")
	ann, err = encodeAnnouncement(mallory, tetherdID, "mallory", otherCA.Issue(t, tetherdID), time.Now())
	require.NoError(t, err)
	_, err = cli.Put(ctx, l.key(mallory.KID()), ann)
	require.NoError(t, err)
	_, val = forge(mallory, "forgedbyotherca")
	_, err = cli.Put(ctx, l.session("forgedbyotherca"), val)
	require.NoError(t, err)
	// 4. A genuine record copied under another session ID.
	tok, info, err := rs[0].m.Login(ctx, alice)
	require.NoError(t, err)
	genuine, err := cli.Get(ctx, l.session(info.ID))
	require.NoError(t, err)
	require.Len(t, genuine.Kvs, 1)
	_, err = cli.Put(ctx, l.session("movedrecord"), string(genuine.Kvs[0].Value))
	require.NoError(t, err)
	// 5. A tombstone signed by mallory's unannounced key (a flood of them
	// would push genuine ones out of the caps).
	tv, err := encodeTombstone(mallory, tetherdID, session.Tombstone{Token: session.TokenHash{9}, Owner: alice.ID, ID: "x", Reason: session.ReasonEnded, Until: time.Now().Add(time.Hour).UnixNano()})
	require.NoError(t, err)
	_, err = cli.Put(ctx, l.tomb(session.TokenHash{9}), tv)
	require.NoError(t, err)
	tombsBefore := rs[1].st.Tombstones()
	barrier()
	require.Equal(t, tombsBefore, rs[1].st.Tombstones(), "a forged tombstone was kept")
	require.Equal(t, 1.0, refusedBefore(rs[1], "tombstone"))
	for i, r := range rs {
		for _, id := range []string{"forgedunannounced", "forgedbyadmin", "forgedbyotherca", "movedrecord"} {
			_, ok := r.st.ByID(id)
			require.False(t, ok, "replica %d took the forged record %s", i, id)
		}
		r.st.mu.Lock()
		_, known := r.st.keys[mallory.KID()]
		r.st.mu.Unlock()
		require.False(t, known, "replica %d took a forged key announcement", i)
	}
	require.Equal(t, before+4, refusedBefore(rs[1], "session"), "each forged record counted as refused")

	// 6. Replay: the ended session's genuine record written back.
	require.NoError(t, rs[0].m.Logout(ctx, info.ID))
	_, err = cli.Put(ctx, l.session(info.ID), string(genuine.Kvs[0].Value))
	require.NoError(t, err)
	barrier()
	for i, r := range rs {
		_, err := r.m.Validate(ctx, tok, alice)
		requireCode(t, err, api.CodeSessionEnded, "replica %d after the replay", i)
	}
}

// TestIdleAcrossReplicas: uses on one replica keep the session alive on
// the others (the last use is shared, once a second), and once unused the
// session ends as idle everywhere, no earlier than the idle timeout less
// that second of precision.
func TestIdleAcrossReplicas(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const idle = 3 * time.Second
	short := withSessionConfig(func(sc *session.Config) { sc.IdleTimeout = idle })
	a, b := f.start(t, short), f.start(t, short)
	alice, _ := peer(t, f.ca, "spiffe://example.org/admin/alice")
	tok, _, err := a.m.Login(ctx, alice)
	require.NoError(t, err)
	// Used on a only, for twice the idle timeout: b's sweeper must not end it.
	// The sleep is the admin's pace between uses (the behaviour under
	// test is a session used this often), not a wait for an event.
	for start := time.Now(); time.Since(start) < 2*idle; time.Sleep(idle / 6) {
		_, err := a.m.Validate(ctx, tok, alice)
		require.NoError(t, err, "a use on replica a, %v after login", time.Since(start))
	}
	_, err = b.m.Validate(ctx, tok, alice)
	require.NoError(t, err, "replica b saw the uses made on a")
	last := time.Now()
	var ended time.Time
	require.Eventually(t, func() bool {
		_, err := a.m.Check(ctx, tok, alice) // a check, not a use: nothing committed
		if err == nil {
			return false
		}
		ended = time.Now()
		requireCode(t, err, api.CodeSessionEnded)
		return true
	}, within, 50*time.Millisecond)
	require.GreaterOrEqual(t, ended.Sub(last), idle-flushEvery, "ended as idle before the idle timeout less the sharing's precision")
	_, err = b.m.Validate(ctx, tok, alice)
	requireCode(t, err, api.CodeSessionEnded)
}

// TestMetricsStartAtZero: every kind of write and of refused record is a
// series from the start, at 0, so an alert on any increase sees the first.
func TestMetricsStartAtZero(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.start(t, func(c *Config, _ *session.Config) { c.Registerer = reg })
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" {
					got[fam.GetName()+"/"+l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	for _, series := range []string{
		"tether_store_refused_total/session", "tether_store_refused_total/tombstone", "tether_store_refused_total/key",
		"tether_store_writes_total/insert", "tether_store_writes_total/update", "tether_store_writes_total/delete",
	} {
		v, ok := got[series]
		require.True(t, ok, "%s is not a series before its first count", series)
		require.Zero(t, v, series)
	}
}
