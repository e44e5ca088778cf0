package session

import (
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// tombstone is what the Manager keeps of a token that no longer opens a
// session (its session ended, or a rebind replaced it): enough to tell its
// owner session_ended without checking the token's signature. Its fields
// other than the list links never change once it is visible.
type tombstone struct {
	Tombstone // Until: the token's exp plus TombstoneGrace; forgotten from then on

	// Insertion order, of all tombstones and of the owner's; changed only
	// under tombstones.mu and never read by lookups.
	prev, next   *tombstone
	oprev, onext *tombstone
	o            *tombOwner
}

// tombOwner is one identity's tombstones, oldest first.
type tombOwner struct {
	oldest, newest *tombstone
	n              int
}

// tombstones is the bounded set of tombstones. Lookups take one shard's read
// lock (as MemoryStore's do); additions, evictions and sweeps are serialised
// by mu. At most perIdentity per SPIFFE ID and total in all are kept: adding
// one beyond a cap evicts the oldest of that identity, or of all.
type tombstones struct {
	total, perIdentity int

	mu             sync.Mutex
	owners         map[spiffeid.ID]*tombOwner
	oldest, newest *tombstone
	count          atomic.Int64 // changed under mu, read without it

	shards [shardCount]tombShard
}

type tombShard struct {
	mu sync.RWMutex
	m  map[TokenHash]*tombstone
	_  [32]byte // keep shards on separate cache lines
}

func newTombstones(total, perIdentity int) *tombstones {
	ts := &tombstones{total: total, perIdentity: perIdentity, owners: make(map[spiffeid.ID]*tombOwner)}
	for i := range ts.shards {
		ts.shards[i].m = make(map[TokenHash]*tombstone)
	}
	return ts
}

func (ts *tombstones) shard(h TokenHash) *tombShard { return &ts.shards[h[0]] }

// get returns the tombstone of h that is still kept at now. It costs one
// map lookup under a shard's read lock and allocates nothing.
func (ts *tombstones) get(h TokenHash, now int64) (Tombstone, bool) {
	s := ts.shard(h)
	s.mu.RLock()
	t := s.m[h]
	s.mu.RUnlock()
	if t == nil || now >= t.Until {
		return Tombstone{}, false
	}
	return t.Tombstone, true
}

// add keeps tb until tb.Until, unless that is already past at now or its
// token has one. It evicts the oldest tombstone of the owner, or of all,
// when a cap is reached.
func (ts *tombstones) add(tb Tombstone, now int64) {
	h, owner := tb.Token, tb.Owner
	if tb.Until <= now {
		return // the token is past its exp: nothing to remember
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s := ts.shard(h)
	s.mu.RLock()
	_, dup := s.m[h]
	s.mu.RUnlock()
	if dup {
		return
	}
	o := ts.owners[owner]
	if o != nil && o.n >= ts.perIdentity {
		ts.remove(o.oldest)
	}
	if ts.count.Load() >= int64(ts.total) {
		ts.remove(ts.oldest)
	}
	if o = ts.owners[owner]; o == nil { // remove may have dropped it
		o = &tombOwner{}
		ts.owners[owner] = o
	}
	t := &tombstone{Tombstone: tb, o: o}
	t.prev = ts.newest
	if ts.newest != nil {
		ts.newest.next = t
	} else {
		ts.oldest = t
	}
	ts.newest = t
	t.oprev = o.newest
	if o.newest != nil {
		o.newest.onext = t
	} else {
		o.oldest = t
	}
	o.newest = t
	o.n++
	ts.count.Add(1)
	s.mu.Lock()
	s.m[h] = t
	s.mu.Unlock()
}

// remove unlinks t. The caller holds mu.
func (ts *tombstones) remove(t *tombstone) {
	s := ts.shard(t.Token)
	s.mu.Lock()
	delete(s.m, t.Token)
	s.mu.Unlock()
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		ts.oldest = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		ts.newest = t.prev
	}
	o := t.o
	if t.oprev != nil {
		t.oprev.onext = t.onext
	} else {
		o.oldest = t.onext
	}
	if t.onext != nil {
		t.onext.oprev = t.oprev
	} else {
		o.newest = t.oprev
	}
	if o.n--; o.n == 0 {
		delete(ts.owners, t.Owner)
	}
	t.prev, t.next, t.oprev, t.onext, t.o = nil, nil, nil, nil, nil
	ts.count.Add(-1)
}

// sweep forgets the tombstones whose tokens are past their exp at now and
// returns how many. It walks all of them (at most total) under mu; lookups
// wait only for the single removals, one shard at a time.
func (ts *tombstones) sweep(now int64) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var n int
	for t := ts.oldest; t != nil; {
		next := t.next
		if now >= t.Until {
			ts.remove(t)
			n++
		}
		t = next
	}
	return n
}

// len is the number of tombstones kept.
func (ts *tombstones) len() int { return int(ts.count.Load()) }
