// Package etcdstore is a session.Store shared by several tetherd replicas
// through etcd v3.
//
// Every replica keeps the whole set of sessions in a local
// session.MemoryStore (its view), fed by one etcd watch on the prefix, so a
// token is still checked with a hash and a map lookup. Writes (login,
// rebind, approval, end) are etcd transactions that compare the record's
// mod revision, so concurrent replicas never lose an update; the caps are
// counters written in the same transactions, so they hold across replicas.
//
// # Freshness (fail closed)
//
// A replica proves its view current: every MaxStaleness/4 it reads the
// cluster's revision with a linearizable read and waits until its watch has
// delivered everything up to it (asking etcd for a progress notification).
// The start of the last proof is the view's "fresh as of" time; while it is
// older than MaxStaleness, Fresh refuses (503 unavailable, Retry-After) and
// the replica is not ready.
//
// # Exact revocation
//
// A write answers only once every replica has applied it: each replica
// acknowledges, under its registration key, the revisions it applies that
// change a session or a tombstone, and the writer waits until every
// registered replica has acknowledged the write's revision, or until
// MaxStaleness has passed since the write (by then a replica that did not
// acknowledge has lost its proof of freshness and refuses everything). So a
// new token works on every replica when its login answers, and an ended or
// replaced token works on none when its logout, revoke or rebind answers.
// Replicas whose registration lease ran out within the last MaxStaleness
// are waited for the same way (they may still serve, stale); one that
// closed cleanly is not. Ends for expiry and idleness do not wait: every
// replica decides those by its own clock.
//
// # What is signed
//
// Each replica's signing key (session.Key) stays in its memory. Its public
// half is announced under keys/<kid>, signed with the replica's X.509 SVID
// and kept under a lease that outlives the replica by the longest session
// lifetime. Every session record is signed with the key of the replica
// that wrote it; a record whose signature, key or issuer does not verify is
// refused (and its session dropped from the view), as is an announcement
// whose SVID is not tetherd's SPIFFE ID under the trust bundle. A record
// that names a token already tombstoned (a replayed record of an ended
// session) is refused too.
package etcdstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

const (
	// opTimeout bounds one etcd call made for a request: a cluster without
	// quorum answers 503 unavailable after it, not never.
	opTimeout = 3 * time.Second
	// flushEvery is how often the last uses seen here are written to etcd:
	// the precision of the idle timeout across replicas.
	flushEvery = time.Second
	// registrationTTL is the lease of a replica's registration (seconds).
	registrationTTL = 5
	// janitorEvery is how often expired tombstones and orphan last-use keys
	// are deleted from etcd.
	janitorEvery = time.Minute
	// casAttempts bounds the retries of a write whose counters moved (every
	// login and end moves the total); retries back off with jitter.
	casAttempts = 64
	// pageSize is how many keys one read of the initial load returns.
	pageSize = 1000
)

// Store is a session.Store whose records live in etcd, with a local view.
type Store struct {
	cfg    Config
	cli    *clientv3.Client
	log    *slog.Logger
	l      layout
	iss    string
	rid    string // this replica's ID
	start  time.Time
	m      *metrics
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	view  atomic.Pointer[session.MemoryStore]
	fresh atomic.Int64 // since start, ns: the start of the last proof; 0 none

	mu       sync.Mutex
	applied  int64         // last revision applied from the watch (events or progress)
	changed  chan struct{} // closed and replaced whenever applied moves
	keys     map[string]ed25519.PublicKey
	counts   map[string]counter
	replicas map[string]int64     // rid -> revision acknowledged
	departed map[string]time.Time // rid -> when its registration vanished
	watchCtx context.Context      // the watch's context: RequestProgress needs it

	dirtyMu sync.Mutex
	dirty   map[string]int64 // session ID -> last use not yet written

	ackWant   atomic.Int64
	ackKick   chan struct{}
	regMu     sync.Mutex
	regOK     bool             // the registration and announcement are written
	regLease  clientv3.LeaseID // the registration's (short) lease
	longLease clientv3.LeaseID // the key announcement's lease; 0 once lost

	// loseAnswers, in tests, makes that many of the next write
	// transactions apply and then fail as if their answer had been lost
	// with their member (see txn).
	loseAnswers atomic.Int32
}

type counter struct {
	n, modRev, asOf int64
}

var _ session.Store = (*Store)(nil)

// Open checks cfg, connects to etcd (lazily: it does not wait for the
// cluster) and starts the background work that loads the sessions, watches
// them and proves the view fresh. Until the first proof, Fresh refuses.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no etcd endpoints")
	}
	if cfg.TLS == nil {
		return nil, errors.New("etcdstore: a TLS configuration is required (etcd is reached over mTLS)")
	}
	if cfg.Issuer.IsZero() || cfg.Key == nil || cfg.SVID == nil || cfg.Bundles == nil {
		return nil, errors.New("etcdstore: Issuer, Key, SVID and Bundles are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("etcdstore: prefix %q must start and end with /", cfg.Prefix)
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = DefaultMaxStaleness
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = session.DefaultTTL
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  cfg.TLS,
		DialTimeout:          opTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(), // its retries are reported as this store's events
		Context:              ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	rid, err := randomRID()
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	s := &Store{
		cfg: cfg, cli: cli, log: cfg.Logger, l: layout{cfg.Prefix}, iss: cfg.Issuer.String(), rid: rid,
		start: time.Now().Add(-time.Nanosecond), changed: make(chan struct{}), keys: map[string]ed25519.PublicKey{},
		counts: map[string]counter{}, replicas: map[string]int64{}, departed: map[string]time.Time{},
		dirty: map[string]int64{}, ackKick: make(chan struct{}, 1),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With(slog.String("replica", rid))
	s.view.Store(s.newView())
	s.m = newMetrics(cfg.Registerer, s)
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, loop := range []func(context.Context){s.runWatch, s.runFresh, s.runFlush, s.runAcks, s.runJanitor} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			loop(bg)
		}()
	}
	return s, nil
}

func (s *Store) newView() *session.MemoryStore {
	return session.NewMemoryStore(s.cfg.MaxTombstones, s.cfg.MaxTombstonesPerIdentity)
}

// ReplicaID is this replica's random ID, as registered in etcd and logged.
func (s *Store) ReplicaID() string { return s.rid }

// leftMark is the registration value of a replica that has stopped serving.
const leftMark = "left"

// Close stops the background work, writes the last uses, withdraws the
// replica's registration (its key announcement stays, for the sessions it
// signed) and closes the client. Call it once the replica no longer serves
// (after its HTTP server has shut down): the other replicas stop waiting
// for its acknowledgements at once.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.flush(ctx)
	// "left", then gone: the others need not wait MaxStaleness for a
	// replica that no longer serves (its lease would end the key anyway).
	_, _ = s.cli.Put(ctx, s.l.replica(s.rid), leftMark)
	_, _ = s.cli.Delete(ctx, s.l.replica(s.rid))
	return s.cli.Close()
}

// mono is the time since the store started: a monotonic clock.
func (s *Store) mono() int64 { return int64(time.Since(s.start)) }

// Fresh implements session.Store.
func (s *Store) Fresh() error {
	f := s.fresh.Load()
	if f != 0 && s.mono()-f <= int64(s.cfg.MaxStaleness) && !s.closed.Load() {
		return nil
	}
	detail := "this replica cannot prove its view of the sessions current (etcd unreachable or without quorum); retry"
	if f == 0 {
		detail = "this replica has not loaded the sessions from etcd yet; retry"
	}
	return &session.Error{Code: api.CodeUnavailable, Reason: session.ReasonStale, Detail: detail, RetryAfter: s.cfg.MaxStaleness}
}

// ByToken implements session.Store.
func (s *Store) ByToken(h session.TokenHash) (session.Record, bool) { return s.view.Load().ByToken(h) }

// ByID implements session.Store.
func (s *Store) ByID(id string) (session.Record, bool) { return s.view.Load().ByID(id) }

// Tombstone implements session.Store.
func (s *Store) Tombstone(h session.TokenHash, now int64) (session.Tombstone, bool) {
	return s.view.Load().Tombstone(h, now)
}

// Range implements session.Store.
func (s *Store) Range(fn func(session.Record) bool) { s.view.Load().Range(fn) }

// Len implements session.Store.
func (s *Store) Len() int { return s.view.Load().Len() }

// Tombstones implements session.Store.
func (s *Store) Tombstones() int { return s.view.Load().Tombstones() }

// Sweep implements session.Store: the view forgets its expired tombstones
// (the janitor deletes them from etcd).
func (s *Store) Sweep(now int64) { s.view.Load().Sweep(now) }

// Touch implements session.Store: the use counts here at once and is
// written to etcd within flushEvery.
func (s *Store) Touch(id string, at int64) {
	s.view.Load().Touch(id, at)
	s.dirtyMu.Lock()
	if at > s.dirty[id] {
		s.dirty[id] = at
	}
	s.dirtyMu.Unlock()
}

// unavailable is the refusal of a write that etcd did not take.
func (s *Store) unavailable(err error) error {
	s.log.Warn("store.write_failed", slog.String("error", err.Error()))
	return &session.Error{Code: api.CodeUnavailable, Reason: session.ReasonStoreDown,
		Detail: "the session store (etcd) did not answer; retry", RetryAfter: s.cfg.MaxStaleness}
}

func (s *Store) counter(key string) counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key]
}

// learnCounter records what a transaction's Else branch read of a counter.
func (s *Store) learnCounter(key string, r *etcdserverpb.RangeResponse, asOf int64) {
	c := counter{asOf: asOf}
	if len(r.Kvs) > 0 {
		c.n, c.modRev = parseInt(r.Kvs[0].Value), r.Kvs[0].ModRevision
	}
	s.mu.Lock()
	if c.asOf >= s.counts[key].asOf {
		s.counts[key] = c
	}
	s.mu.Unlock()
}

// readCounters reads the counters from etcd (a quorum read) into the cache.
func (s *Store) readCounters(ctx context.Context, keys ...string) error {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := s.txn(ctx, nil, ops, nil)
	if err != nil {
		return err
	}
	for i, k := range keys {
		s.learnCounter(k, resp.Responses[i].GetResponseRange(), resp.Header.Revision)
	}
	return nil
}

// countOps are the operations that move a counter by delta: a put, or a
// delete at zero.
func countOps(key string, c counter, delta int64) clientv3.Op {
	n := max(c.n+delta, 0)
	if n == 0 {
		return clientv3.OpDelete(key)
	}
	return clientv3.OpPut(key, strconv.FormatInt(n, 10))
}

// Insert implements session.Store.
func (s *Store) Insert(ctx context.Context, r session.Record, lim session.Limits) error {
	val, err := encodeRecord(s.cfg.Key, s.iss, r)
	if err != nil {
		return err
	}
	key, tk, ik := s.l.session(r.ID), s.l.total(), s.l.perIdentity(r.Owner)
	confirmed := false // the counters were read from etcd, not from the view
	for attempt := range casAttempts {
		tot, idn := s.counter(tk), s.counter(ik)
		reason := ""
		switch {
		case lim.Total > 0 && tot.n >= int64(lim.Total):
			reason = session.ReasonLimitTotal
		case lim.PerIdentity > 0 && idn.n >= int64(lim.PerIdentity):
			reason = session.ReasonLimitIdentity
		}
		if reason != "" && confirmed {
			return &session.Error{Code: api.CodeSessionLimit, Reason: reason}
		}
		if reason != "" { // the view may not have seen an end yet: ask etcd
			if err := s.readCounters(ctx, tk, ik); err != nil {
				return s.unavailable(err)
			}
			confirmed = true
			continue
		}
		resp, err := s.txn(ctx,
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(tk), "=", tot.modRev),
				clientv3.Compare(clientv3.ModRevision(ik), "=", idn.modRev),
				clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			},
			[]clientv3.Op{clientv3.OpPut(key, val), countOps(tk, tot, 1), countOps(ik, idn, 1)},
			[]clientv3.Op{clientv3.OpGet(tk), clientv3.OpGet(ik), clientv3.OpGet(key)})
		if err != nil {
			return s.unavailable(err)
		}
		// A record equal to ours under our key is this very insert, sent
		// again after its first answer was lost (see txn): it applied.
		if resp.Succeeded || holds(resp.Responses[2], val) {
			s.m.writes.WithLabelValues("insert").Inc()
			if err := s.waitApplied(ctx, resp.Header.Revision); err != nil {
				return err
			}
			s.waitAcks(ctx, resp.Header.Revision) // the token works on every replica when it is answered
			return nil
		}
		s.learnCounter(tk, resp.Responses[0].GetResponseRange(), resp.Header.Revision)
		s.learnCounter(ik, resp.Responses[1].GetResponseRange(), resp.Header.Revision)
		if len(resp.Responses[2].GetResponseRange().Kvs) > 0 {
			return session.ErrConflict
		}
		s.m.conflicts.Inc()
		if err := backoff(ctx, attempt); err != nil {
			return s.unavailable(err)
		}
	}
	return &session.Error{Code: api.CodeUnavailable, Reason: session.ReasonConflict, Detail: "too many concurrent logins; retry", RetryAfter: time.Second}
}

// Update implements session.Store.
func (s *Store) Update(ctx context.Context, cur, next session.Record, t *session.Tombstone) error {
	next.ID = cur.ID
	val, err := encodeRecord(s.cfg.Key, s.iss, next)
	if err != nil {
		return err
	}
	key := s.l.session(cur.ID)
	var then []clientv3.Op
	if t != nil {
		tv, err := encodeTombstone(s.cfg.Key, s.iss, *t)
		if err != nil {
			return err
		}
		then = append(then, clientv3.OpPut(s.l.tomb(t.Token), tv))
	}
	then = append(then, clientv3.OpPut(key, val))
	resp, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", cur.Rev)}, then, []clientv3.Op{clientv3.OpGet(key)})
	if err != nil {
		return s.unavailable(err)
	}
	if err := s.waitApplied(ctx, resp.Header.Revision); err != nil {
		return err
	}
	// The record as we wrote it is this very update, sent again after its
	// first answer was lost (see txn): it applied.
	if !resp.Succeeded && !holds(resp.Responses[0], val) {
		return session.ErrConflict // the view now shows what won
	}
	s.m.writes.WithLabelValues("update").Inc()
	s.waitAcks(ctx, resp.Header.Revision)
	return nil
}

// Delete implements session.Store. An end for expiry or idleness does not
// wait for the other replicas' acknowledgements: each of them ends such a
// session by its own clock.
func (s *Store) Delete(ctx context.Context, cur session.Record, t session.Tombstone) error {
	key, tk, ik := s.l.session(cur.ID), s.l.total(), s.l.perIdentity(cur.Owner)
	tv, err := encodeTombstone(s.cfg.Key, s.iss, t)
	if err != nil {
		return err
	}
	for attempt := range casAttempts {
		tot, idn := s.counter(tk), s.counter(ik)
		resp, err := s.txn(ctx,
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(key), "=", cur.Rev),
				clientv3.Compare(clientv3.ModRevision(tk), "=", tot.modRev),
				clientv3.Compare(clientv3.ModRevision(ik), "=", idn.modRev),
			},
			[]clientv3.Op{
				clientv3.OpPut(s.l.tomb(t.Token), tv), // first: a lookup that misses the record finds it
				clientv3.OpDelete(key), clientv3.OpDelete(s.l.used(cur.ID)),
				countOps(tk, tot, -1), countOps(ik, idn, -1),
			},
			[]clientv3.Op{clientv3.OpGet(key, clientv3.WithKeysOnly()), clientv3.OpGet(tk), clientv3.OpGet(ik), clientv3.OpGet(s.l.tomb(t.Token))})
		if err != nil {
			return s.unavailable(err)
		}
		// The record gone and our very tombstone in its place: this delete,
		// sent again after its first answer was lost (see txn), applied.
		if resp.Succeeded || len(resp.Responses[0].GetResponseRange().Kvs) == 0 && holds(resp.Responses[3], tv) {
			s.m.writes.WithLabelValues("delete").Inc()
			if err := s.waitApplied(ctx, resp.Header.Revision); err != nil {
				return err
			}
			if t.Reason != session.ReasonExpired && t.Reason != session.ReasonIdle {
				s.waitAcks(ctx, resp.Header.Revision)
			}
			return nil
		}
		got := resp.Responses[0].GetResponseRange()
		if len(got.Kvs) == 0 || got.Kvs[0].ModRevision != cur.Rev {
			if err := s.waitApplied(ctx, resp.Header.Revision); err != nil {
				return err
			}
			return session.ErrConflict
		}
		s.learnCounter(tk, resp.Responses[1].GetResponseRange(), resp.Header.Revision)
		s.learnCounter(ik, resp.Responses[2].GetResponseRange(), resp.Header.Revision)
		s.m.conflicts.Inc()
		if err := backoff(ctx, attempt); err != nil {
			return s.unavailable(err)
		}
	}
	return &session.Error{Code: api.CodeUnavailable, Reason: session.ReasonConflict, Detail: "too many concurrent changes; retry", RetryAfter: time.Second}
}

// backoff waits before retry attempt+1 of a write that lost a race: a
// random time up to 2^attempt ms, at most 50 ms, so that writers that
// collided do not collide again.
func backoff(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + time.Millisecond/4) //nolint:gosec // G404: jitter, not a secret
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// txn commits a transaction within opTimeout. One whose answer was lost
// with the member that took it (Unavailable: the member died, or its
// connection closed, under the call) is sent again, through another member,
// up to lostAttempts times: it may have applied, and no error tells. Every
// write sent here is a compare-and-swap, so a second send of one that had
// applied fails its compares instead of applying twice; its callers then
// tell their own write from another's by what the Else branch reads (Insert,
// Update, Delete). This is what keeps a follower's loss from failing the
// writes in flight on its connection.
func (s *Store) txn(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err == nil && len(cmps) > 0 && s.loseAnswers.Load() > 0 && s.loseAnswers.Add(-1) >= 0 {
			resp, err = nil, status.Error(codes.Unavailable, "error reading from server: EOF (lost by a test)")
		}
		if err == nil || !lostWithMember(err) || attempt+1 == lostAttempts {
			return resp, err
		}
		s.m.lost.Inc()
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// lostAttempts bounds the sends of a transaction whose answers were lost.
const lostAttempts = 4

// lostWithMember reports whether err is etcd's client telling that the
// member it used is gone or has no leader (gRPC Unavailable): another
// member may answer.
func lostWithMember(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

// holds reports whether a range answer of an Else branch holds exactly val.
func holds(r *etcdserverpb.ResponseOp, val string) bool {
	kvs := r.GetResponseRange().GetKvs()
	return len(kvs) == 1 && bytes.Equal(kvs[0].Value, []byte(val))
}

// waitApplied returns once the view holds every change up to rev, so a
// write is visible here when it answers (read your writes).
func (s *Store) waitApplied(ctx context.Context, rev int64) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for {
		s.mu.Lock()
		applied, ch := s.applied, s.changed
		s.mu.Unlock()
		if applied >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s.unavailable(fmt.Errorf("the watch did not deliver revision %d: %w", rev, ctx.Err()))
		}
	}
}

// waitAcks waits until every other registered replica has acknowledged rev
// (so a new token works on every replica, and an ended one works on none),
// and every replica that left recently has been gone for MaxStaleness, but
// no longer than MaxStaleness from now: by then any replica that has not
// applied rev cannot prove itself fresh and refuses everything.
func (s *Store) waitAcks(ctx context.Context, rev int64) {
	begin := time.Now()
	deadline := begin.Add(s.cfg.MaxStaleness)
	defer func() { s.m.ackWait.Observe(time.Since(begin).Seconds()) }()
	for {
		now := time.Now()
		wake := deadline
		s.mu.Lock()
		pending := false
		for rid, acked := range s.replicas {
			if rid != s.rid && acked < rev {
				pending = true
			}
		}
		for rid, at := range s.departed {
			if until := at.Add(s.cfg.MaxStaleness); now.Before(until) {
				pending = true
				wake = minTime(wake, until)
			} else {
				delete(s.departed, rid)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if !pending || !now.Before(deadline) {
			return
		}
		t := time.NewTimer(wake.Sub(now))
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// advance moves the applied revision and wakes the waiters.
func (s *Store) advance(rev int64) {
	s.mu.Lock()
	if rev > s.applied {
		s.applied = rev
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	s.m.revision.Set(float64(rev))
}

// kickAck asks the ack loop to acknowledge rev.
func (s *Store) kickAck(rev int64) {
	for {
		old := s.ackWant.Load()
		if rev <= old || s.ackWant.CompareAndSwap(old, rev) {
			break
		}
	}
	select {
	case s.ackKick <- struct{}{}:
	default:
	}
}

// applyEvent applies one watched change to the view and the caches. It
// reports whether the change is to a session or a tombstone, which the
// replica acknowledges.
func (s *Store) applyEvent(view *session.MemoryStore, ev *clientv3.Event) (acknowledge bool) {
	key := string(ev.Kv.Key)
	rest, ok := strings.CutPrefix(key, s.cfg.Prefix)
	if !ok {
		return false
	}
	del := ev.Type == mvccpb.DELETE
	now := time.Now().UnixNano()
	switch {
	case strings.HasPrefix(rest, "sessions/"):
		id := strings.TrimPrefix(rest, "sessions/")
		if del {
			view.Remove(id, nil, now)
			return true
		}
		s.applyRecord(view, id, ev.Kv.Value, ev.Kv.ModRevision, now)
		return true
	case strings.HasPrefix(rest, "used/"):
		if !del {
			view.Touch(strings.TrimPrefix(rest, "used/"), parseInt(ev.Kv.Value))
		}
	case strings.HasPrefix(rest, "tombstones/"):
		if !del { // the view forgets a tombstone only at its own sweep
			s.mu.Lock()
			keys := s.keys
			s.mu.Unlock()
			t, err := decodeTombstone(strings.TrimPrefix(rest, "tombstones/"), ev.Kv.Value, s.iss, keys)
			if err != nil {
				s.refused("tombstone", key, err)
				return false
			}
			view.PutTombstone(t, now)
			return true
		}
	case strings.HasPrefix(rest, "keys/"):
		kid := strings.TrimPrefix(rest, "keys/")
		if del {
			s.mu.Lock()
			delete(s.keys, kid)
			s.mu.Unlock()
			return false
		}
		pub, err := decodeAnnouncement(ev.Kv.Value, kid, s.cfg.Issuer, s.cfg.Bundles)
		if err != nil {
			s.refused("key", key, err)
			return false
		}
		s.mu.Lock()
		s.keys[kid] = pub
		s.mu.Unlock()
	case strings.HasPrefix(rest, "replicas/"):
		rid := strings.TrimPrefix(rest, "replicas/")
		s.mu.Lock()
		_, known := s.replicas[rid]
		switch {
		case !del && string(ev.Kv.Value) == leftMark:
			delete(s.replicas, rid) // stopped serving: nothing to wait for
		case del:
			delete(s.replicas, rid)
			if known && rid != s.rid { // its lease ran out: it may still serve, stale
				s.departed[rid] = time.Now()
			}
		default:
			s.replicas[rid] = parseInt(ev.Kv.Value)
		}
		s.mu.Unlock()
	case rest == "count" || strings.HasPrefix(rest, "count/"):
		c := counter{asOf: ev.Kv.ModRevision}
		if !del {
			c.n, c.modRev = parseInt(ev.Kv.Value), ev.Kv.ModRevision
		}
		s.mu.Lock()
		if c.asOf >= s.counts[key].asOf {
			s.counts[key] = c
		}
		s.mu.Unlock()
	}
	return false
}

// applyRecord verifies a session record and puts it in the view; a record
// that does not verify takes its session out of the view (fail closed).
func (s *Store) applyRecord(view *session.MemoryStore, id string, raw []byte, rev, now int64) {
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	r, err := decodeRecord(raw, id, s.iss, keys)
	if err == nil {
		if _, ended := view.Tombstone(r.Binding.Token, now); ended {
			err = fmt.Errorf("its token has ended (a replayed record): %w", errForged)
		}
	}
	if err != nil {
		view.Remove(id, nil, now)
		s.refused("session", s.l.session(id), err)
		return
	}
	r.Rev = rev
	view.Set(r)
}

// refusedKinds are the kinds of records refused reads count.
var refusedKinds = []string{"session", "tombstone", "key"}

func (s *Store) refused(kind, key string, err error) {
	s.m.refused.WithLabelValues(kind).Inc()
	s.log.Error("store.record_refused", slog.String("kind", kind), slog.String("key", key), slog.String("error", err.Error()))
}

// metrics are the store's own.
type metrics struct {
	writes    *prometheus.CounterVec
	conflicts prometheus.Counter
	lost      prometheus.Counter
	refused   *prometheus.CounterVec
	revision  prometheus.Gauge
	ackWait   prometheus.Histogram
	restarts  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_store_writes_total",
			Help: "Session writes to etcd that succeeded, by kind."}, []string{"kind"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_store_conflicts_total",
			Help: "Writes retried because a counter moved under them."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_store_lost_answers_total",
			Help: "etcd transactions sent again because the member that took them was lost before it answered."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_store_refused_total",
			Help: "Records read from etcd that did not verify (forged, replayed or corrupt), by kind."}, []string{"kind"}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tether_store_revision",
			Help: "The etcd revision this replica's view has applied."}),
		ackWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tether_store_ack_wait_seconds",
			Help:    "How long an end or rebind waited for every replica to acknowledge it.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2}}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_store_watch_restarts_total",
			Help: "Times the etcd watch was started again (the first start included)."}),
	}
	// Every kind is a series from the start, at 0, so that an alert on
	// any increase sees the first one.
	for _, kind := range []string{"insert", "update", "delete"} {
		m.writes.WithLabelValues(kind)
	}
	for _, kind := range refusedKinds {
		m.refused.WithLabelValues(kind)
	}
	if reg != nil {
		fresh := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_store_fresh",
			Help: "1 while this replica can prove its view of the sessions current, else 0."}, func() float64 {
			if s.Fresh() == nil {
				return 1
			}
			return 0
		})
		reg.MustRegister(m.writes, m.conflicts, m.lost, m.refused, m.revision, m.ackWait, m.restarts, fresh)
	}
	return m
}
