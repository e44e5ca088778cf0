package etcdstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func randomRID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("etcdstore: random: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// sleep waits d or until ctx is done; false if ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runWatch loads the sessions and follows them, loading again after a
// compaction and watching again after any other failure.
func (s *Store) runWatch(ctx context.Context) {
	backoff := 50 * time.Millisecond
	needLoad := true
	for ctx.Err() == nil {
		if needLoad {
			if err := s.load(ctx); err != nil {
				s.log.Warn("store.load_failed", slog.String("error", err.Error()))
				sleep(ctx, backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			needLoad = false
		}
		s.m.restarts.Inc()
		s.mu.Lock()
		from := s.applied + 1
		s.mu.Unlock()
		err := s.watch(ctx, from)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			s.log.Warn("store.watch_compacted", slog.Int64("from", from))
			needLoad = true
		} else {
			s.log.Warn("store.watch_failed", slog.String("error", errString(err)))
			sleep(ctx, backoff)
			backoff = min(2*backoff, time.Second)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// load reads everything under the prefix at one revision into a new view,
// verified keys first, then tombstones, then records, and swaps it in.
func (s *Store) load(ctx context.Context) error {
	end := clientv3.GetPrefixRangeEnd(s.cfg.Prefix)
	var kvs []*mvccpb.KeyValue
	var rev int64
	from := s.cfg.Prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		gctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := s.cli.Get(gctx, from, opts...)
		cancel()
		if err != nil {
			return err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		kvs = append(kvs, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	order := func(kv *mvccpb.KeyValue) int {
		rest := strings.TrimPrefix(string(kv.Key), s.cfg.Prefix)
		switch {
		case strings.HasPrefix(rest, "keys/"):
			return 0
		case strings.HasPrefix(rest, "tombstones/"):
			return 1
		case strings.HasPrefix(rest, "sessions/"):
			return 2
		}
		return 3
	}
	slices.SortStableFunc(kvs, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(order(a), order(b)) })
	s.mu.Lock()
	clear(s.keys)
	clear(s.counts)
	clear(s.replicas)
	s.mu.Unlock()
	view := s.newView()
	for _, kv := range kvs {
		s.applyEvent(view, &clientv3.Event{Type: mvccpb.PUT, Kv: kv})
	}
	s.view.Store(view)
	s.advance(rev)
	s.log.Info("store.loaded", slog.Int("sessions", view.Len()), slog.Int("tombstones", view.Tombstones()), slog.Int64("revision", rev))
	return nil
}

// watch applies every change after from until the watch fails.
func (s *Store) watch(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	s.mu.Lock()
	s.watchCtx = wctx
	s.mu.Unlock()
	ch := s.cli.Watch(wctx, s.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.IsProgressNotify() {
			s.advance(resp.Header.Revision)
			continue
		}
		if len(resp.Events) == 0 {
			continue
		}
		view := s.view.Load()
		ack := false
		for _, ev := range resp.Events {
			if s.applyEvent(view, ev) {
				ack = true
			}
		}
		rev := resp.Events[len(resp.Events)-1].Kv.ModRevision
		s.advance(rev)
		if ack {
			s.kickAck(rev)
		}
	}
	return ctx.Err()
}

// ensureRegistered writes, once per lease, the replica's key announcement
// (under a lease that outlives the replica by SessionTTL) and its
// registration (under a short lease), and keeps both leases alive. A lost
// lease makes the next call write them again.
func (s *Store) ensureRegistered(ctx context.Context) error {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.regOK {
		return nil
	}
	svid, err := s.cfg.SVID()
	if err != nil {
		return fmt.Errorf("own SVID: %w", err)
	}
	ann, err := encodeAnnouncement(s.cfg.Key, s.iss, s.rid, svid, time.Now())
	if err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if s.longLease == 0 { // the announcement's lease: granted once, kept while it lives
		long, err := s.cli.Grant(gctx, int64((s.cfg.SessionTTL+time.Minute)/time.Second))
		if err != nil {
			return err
		}
		if err := s.keepAlive(ctx, long.ID, func() { s.longLease = 0 }); err != nil {
			return err
		}
		s.longLease = long.ID
	}
	short, err := s.cli.Grant(gctx, registrationTTL)
	if err != nil {
		return err
	}
	s.mu.Lock()
	applied := s.applied
	s.mu.Unlock()
	if _, err := s.cli.Txn(gctx).Then(
		clientv3.OpPut(s.l.key(s.cfg.Key.KID()), ann, clientv3.WithLease(s.longLease)),
		clientv3.OpPut(s.l.replica(s.rid), strconv.FormatInt(applied, 10), clientv3.WithLease(short.ID)),
	).Commit(); err != nil {
		_, _ = s.cli.Revoke(gctx, short.ID) // never used
		return err
	}
	if err := s.keepAlive(ctx, short.ID, func() {}); err != nil {
		return err
	}
	s.regLease = short.ID
	s.regOK = true
	s.log.Info("store.registered", slog.String("kid", s.cfg.Key.KID()), slog.String("svid", svid.ID.String()))
	return nil
}

// keepAlive keeps lease id alive until it is lost or ctx ends; then, under
// regMu, it runs lost and has the next ensureRegistered write the
// registration and announcement again. The caller holds regMu.
func (s *Store) keepAlive(ctx context.Context, id clientv3.LeaseID, lost func()) error {
	ka, err := s.cli.KeepAlive(ctx, id)
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for range ka { // drained until the lease is lost or ctx ends
		}
		s.regMu.Lock()
		lost()
		s.regOK = false
		s.regMu.Unlock()
	}()
	return nil
}

// runFresh proves the view current every MaxStaleness/4 and logs when the
// replica turns stale or fresh again. Probes overlap (up to four at once):
// one stuck on a member that just died does not hold back the next, which
// the client sends to a live member.
func (s *Store) runFresh(ctx context.Context) {
	every := max(s.cfg.MaxStaleness/4, 10*time.Millisecond)
	inFlight := make(chan struct{}, 4)
	wasFresh := false
	for {
		if err := s.ensureRegistered(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("store.register_failed", slog.String("error", err.Error()))
		} else {
			select {
			case inFlight <- struct{}{}:
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer func() { <-inFlight }()
					s.probe(ctx)
				}()
			default: // four probes already wait: the cluster is not answering
			}
		}
		isFresh := s.Fresh() == nil
		if isFresh != wasFresh {
			if isFresh {
				s.log.Info("store.fresh")
			} else {
				s.log.Error("store.stale", slog.Duration("max_staleness", s.cfg.MaxStaleness))
			}
			wasFresh = isFresh
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

// probe reads the cluster's revision (linearizable) and waits until the
// watch has delivered everything up to it; the view is then at least as
// current as the cluster was when the probe began.
func (s *Store) probe(ctx context.Context) {
	t0 := s.mono()
	pctx, cancel := context.WithTimeout(ctx, s.cfg.MaxStaleness)
	defer cancel()
	resp, err := s.cli.Get(pctx, s.l.replica(s.rid), clientv3.WithCountOnly())
	if err != nil {
		return
	}
	if resp.Count == 0 { // the registration's lease ran out: register again first
		s.regMu.Lock()
		s.regOK = false
		s.regMu.Unlock()
		return
	}
	target := resp.Header.Revision
	for {
		s.mu.Lock()
		applied, ch, wctx := s.applied, s.changed, s.watchCtx
		s.mu.Unlock()
		if applied >= target {
			if t0 > s.fresh.Load() {
				s.fresh.Store(t0)
			}
			return
		}
		if wctx != nil {
			_ = s.cli.RequestProgress(wctx) // a watch not yet synced ignores it: asked again below
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-pctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// runAcks writes the replica's acknowledgements: the revision it has
// applied, after a change to a session or a tombstone.
func (s *Store) runAcks(ctx context.Context) {
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ackKick:
		}
		for s.ackWant.Load() > sent && ctx.Err() == nil {
			s.mu.Lock()
			applied := s.applied
			s.mu.Unlock()
			s.regMu.Lock()
			lease, ok := s.regLease, s.regOK
			s.regMu.Unlock()
			if !ok {
				break // registering again writes the applied revision
			}
			actx, cancel := context.WithTimeout(ctx, opTimeout)
			_, err := s.cli.Put(actx, s.l.replica(s.rid), strconv.FormatInt(applied, 10), clientv3.WithLease(lease))
			cancel()
			if err != nil {
				sleep(ctx, 50*time.Millisecond)
				continue
			}
			sent = applied
		}
	}
}

// runFlush writes the last uses seen here every flushEvery.
func (s *Store) runFlush(ctx context.Context) {
	for sleep(ctx, flushEvery) {
		s.flush(ctx)
	}
}

func (s *Store) flush(ctx context.Context) {
	s.dirtyMu.Lock()
	dirty := s.dirty
	s.dirty = make(map[string]int64, len(dirty))
	s.dirtyMu.Unlock()
	if len(dirty) == 0 {
		return
	}
	ops := make([]clientv3.Op, 0, len(dirty))
	for id, at := range dirty {
		ops = append(ops, clientv3.OpPut(s.l.used(id), strconv.FormatInt(at, 10)))
	}
	for chunk := range slices.Chunk(ops, 64) { // etcd takes at most 128 operations a transaction
		fctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := s.cli.Txn(fctx).Then(chunk...).Commit()
		cancel()
		if err != nil { // keep them for the next flush
			s.dirtyMu.Lock()
			for id, at := range dirty {
				if at > s.dirty[id] {
					s.dirty[id] = at
				}
			}
			s.dirtyMu.Unlock()
			return
		}
	}
}

// runJanitor deletes, every janitorEvery, the tombstones past their Until
// and the last-use keys of sessions that are gone. Every replica does it;
// deleting twice is harmless.
func (s *Store) runJanitor(ctx context.Context) {
	for sleep(ctx, janitorEvery) {
		if err := s.janitor(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("store.janitor_failed", slog.String("error", err.Error()))
		}
	}
}

func (s *Store) janitor(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*opTimeout)
	defer cancel()
	now := time.Now().UnixNano()
	var dels []clientv3.Op
	tombs, err := s.cli.Get(ctx, s.cfg.Prefix+"tombstones/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range tombs.Kvs {
		hexHash := strings.TrimPrefix(string(kv.Key), s.cfg.Prefix+"tombstones/")
		if t, err := decodeTombstone(hexHash, kv.Value, s.iss, nil); err != nil || now >= t.Until {
			dels = append(dels, clientv3.OpDelete(string(kv.Key)))
		}
	}
	rev := tombs.Header.Revision
	sessions, err := s.cli.Get(ctx, s.cfg.Prefix+"sessions/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(sessions.Kvs))
	for _, kv := range sessions.Kvs {
		live[strings.TrimPrefix(string(kv.Key), s.cfg.Prefix+"sessions/")] = true
	}
	used, err := s.cli.Get(ctx, s.cfg.Prefix+"used/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
	if err != nil {
		return err
	}
	for _, kv := range used.Kvs {
		if !live[strings.TrimPrefix(string(kv.Key), s.cfg.Prefix+"used/")] {
			dels = append(dels, clientv3.OpDelete(string(kv.Key)))
		}
	}
	for chunk := range slices.Chunk(dels, 64) {
		if _, err := s.cli.Txn(ctx).Then(chunk...).Commit(); err != nil {
			return err
		}
	}
	return nil
}
