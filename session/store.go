package session

import (
	"cmp"
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/api"
)

// TokenHash is the SHA-256 of a token: the only token-derived value stored.
type TokenHash [32]byte

// Binding is what a token is bound to: the hash of the token itself and the
// fingerprint of the leaf certificate it may be presented over, with that
// leaf's NotBefore (zero if unknown), which orders rebinds.
type Binding struct {
	Token       TokenHash
	Fingerprint string
	NotBefore   time.Time
}

// Record is one session as a store holds it: a value. A store hands out
// copies; a change is a compare-and-swap of a whole record (Store.Update,
// Store.Delete) against the Rev the caller read. Only the last use moves
// without one (Store.Touch), since every request moves it.
type Record struct {
	ID        string
	Owner     spiffeid.ID
	CreatedAt int64 // Unix nanoseconds
	ExpiresAt int64 // Unix nanoseconds, the absolute end
	Binding   Binding
	// Roles the session holds, sorted; Needed is how many approvals it
	// still waits for (0: active); Approvals are those received.
	Roles     []string
	Needed    int
	Approvals []Approval
	// LastUsed is the last use in Unix nanoseconds, as of the read.
	LastUsed int64
	// Rev is the record's version in its store: set by the store, compared
	// by Update and Delete. Opaque to everyone else.
	Rev int64
}

// Pending reports whether the session still waits for approvals.
func (r *Record) Pending() bool { return r.Needed > 0 }

// Tombstone is what a store keeps of a token that no longer opens a
// session: its owner, its session and why, until Until (Unix nanoseconds).
type Tombstone struct {
	Token  TokenHash
	Owner  spiffeid.ID
	ID     string // session ID
	Reason string // ReasonEnded, ReasonIdle, ReasonSuperseded...
	Until  int64
}

// Limits caps the live sessions a store accepts.
type Limits struct {
	Total, PerIdentity int
}

// ErrConflict is a store's answer to a compare-and-swap that lost: the
// record changed since it was read, or is gone. The caller reads it again.
var ErrConflict = errors.New("session: the record changed since it was read")

// Store keeps session records and the tombstones of ended tokens. It must be
// safe for concurrent use. ByToken, Tombstone, Touch and Fresh are the hot
// path: they must answer from memory without waiting behind writers of
// other sessions. Writes are compare-and-swaps on Record.Rev, so a store
// shared by several tetherd replicas (package etcdstore) implements the same
// interface as MemoryStore; a write that cannot reach the shared engine
// returns an *Error unavailable.
type Store interface {
	// Insert adds r (its Rev ignored) unless a limit is reached (*Error
	// session_limit) or its ID is taken (ErrConflict).
	Insert(ctx context.Context, r Record, lim Limits) error
	// ByToken finds the live record bound to a token hash.
	ByToken(h TokenHash) (Record, bool)
	// ByID finds a live record by session ID.
	ByID(id string) (Record, bool)
	// Tombstone finds the tombstone of a token hash still kept at now.
	Tombstone(h TokenHash, now int64) (Tombstone, bool)
	// Update replaces cur with next if cur.Rev is still the record's
	// version (else ErrConflict). With t, t.Token (cur's token, replaced by
	// next's) becomes a tombstone in the same step.
	Update(ctx context.Context, cur, next Record, t *Tombstone) error
	// Delete removes cur if cur.Rev is still its version (else ErrConflict)
	// and makes its token the tombstone t in the same step: a lookup that
	// misses the live record finds the tombstone.
	Delete(ctx context.Context, cur Record, t Tombstone) error
	// Touch records a use of session id at (Unix nanoseconds); the last use
	// never moves backwards.
	Touch(id string, at int64)
	// Range calls fn with every live record (in no order) until fn returns
	// false. fn may write to the store.
	Range(fn func(Record) bool)
	// Len is the number of live records; Tombstones the number of tombstones.
	Len() int
	Tombstones() int
	// Sweep forgets the tombstones past their Until at now.
	Sweep(now int64)
	// Fresh is nil while the store can answer from a current view; else the
	// *Error unavailable to refuse with (a replica cut off from its peers).
	Fresh() error
}

const shardCount = 256

// MemoryStore is the in-memory Store, and the local view of package
// etcdstore. Records are indexed by token hash in shards picked by the
// hash's first byte, and by session ID in shards picked by a seeded hash of
// the ID. A single mutation lock serialises inserts, updates and deletes (so
// caps hold exactly); lookups take only one shard's read lock.
type MemoryStore struct {
	mu          sync.Mutex // serialises mutations; never taken by lookups
	perIdentity map[spiffeid.ID]*identity
	rev         int64 // the last Rev given, under mu

	seed    maphash.Seed
	byToken [shardCount]tokenShard
	byID    [shardCount]idShard
	count   atomic.Int64 // live records: changed under mu, read without it
	tombs   *tombstones

	// replacing, if set (by tests), runs when a change has put a
	// session's new entry in the indexes and not yet marked the old one
	// gone.
	replacing func()
}

// entry is a published record: rec never changes once an index holds the
// entry (a change publishes a new entry); the last use moves in place.
type entry struct {
	rec      Record
	lastUsed atomic.Int64
	// gone is set once the entry is no longer the session's: a newer entry
	// took its place, or the session left the store. A use recorded on an
	// entry found before is then recorded again by ID (see Touch).
	gone atomic.Bool
}

func (e *entry) load() Record {
	r := e.rec
	r.LastUsed = e.lastUsed.Load()
	return r
}

// touch moves the last use to at unless it is already later.
func (e *entry) touch(at int64) {
	for {
		old := e.lastUsed.Load()
		if at <= old || e.lastUsed.CompareAndSwap(old, at) {
			return
		}
	}
}

// identity is the count of one SPIFFE ID's sessions and its canonical ID
// value, shared by all its records so the ID's strings are held once.
type identity struct {
	id spiffeid.ID
	n  int
}

type tokenShard struct {
	mu sync.RWMutex
	m  map[TokenHash]*entry
	_  [40]byte // keep shards on separate cache lines
}

type idShard struct {
	mu sync.RWMutex
	m  map[string]*entry
	_  [40]byte
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory store that keeps at most
// maxTombstones tombstones in all and maxPerIdentity per SPIFFE ID (beyond
// a cap the oldest is forgotten); zero takes DefaultTombstonesPerSession
// times the default session caps.
func NewMemoryStore(maxTombstones, maxPerIdentity int) *MemoryStore {
	s := &MemoryStore{
		perIdentity: make(map[spiffeid.ID]*identity),
		seed:        maphash.MakeSeed(),
		tombs: newTombstones(orDefault(maxTombstones, DefaultTombstonesPerSession*DefaultMaxSessions),
			orDefault(maxPerIdentity, DefaultTombstonesPerSession*DefaultMaxSessionsPerIdentity)),
	}
	for i := range s.byToken {
		s.byToken[i].m = make(map[TokenHash]*entry)
		s.byID[i].m = make(map[string]*entry)
	}
	return s
}

func (s *MemoryStore) tokenShard(h TokenHash) *tokenShard { return &s.byToken[h[0]] }

func (s *MemoryStore) idShard(id string) *idShard {
	return &s.byID[maphash.String(s.seed, id)%shardCount]
}

func (s *MemoryStore) entryByID(id string) *entry {
	is := s.idShard(id)
	is.mu.RLock()
	e := is.m[id]
	is.mu.RUnlock()
	return e
}

// Insert implements Store.
func (s *MemoryStore) Insert(_ context.Context, r Record, lim Limits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entryByID(r.ID) != nil {
		return ErrConflict
	}
	if lim.Total > 0 && s.count.Load() >= int64(lim.Total) {
		return reject(api.CodeSessionLimit, ReasonLimitTotal)
	}
	ident := s.perIdentity[r.Owner]
	if ident != nil && lim.PerIdentity > 0 && ident.n >= lim.PerIdentity {
		return reject(api.CodeSessionLimit, ReasonLimitIdentity)
	}
	s.rev++
	r.Rev = s.rev
	s.publish(nil, r)
	return nil
}

// Set stores r as it is, Rev included, replacing any record of its ID, and
// checks no limit: for a store that mirrors an authoritative copy kept
// elsewhere (package etcdstore applies what its watch delivers).
func (s *MemoryStore) Set(r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publish(s.entryByID(r.ID), r)
}

// publish indexes r in place of old (nil: a new session). The caller holds mu.
func (s *MemoryStore) publish(old *entry, r Record) {
	if old == nil {
		ident := s.perIdentity[r.Owner]
		if ident == nil {
			ident = &identity{id: r.Owner}
			s.perIdentity[r.Owner] = ident
		}
		ident.n++
		r.Owner = ident.id // share the strings
		s.count.Add(1)
	} else {
		r.Owner = old.rec.Owner
	}
	e := &entry{rec: r}
	e.lastUsed.Store(r.LastUsed)
	if old != nil {
		e.touch(old.lastUsed.Load())
		// A use may be recorded on old up to the moment it is marked gone
		// (below, once e is in the maps); the uses recorded after that
		// see the mark and go to e by ID. The last use is copied again
		// once marked, for the uses in between.
		defer func() {
			old.gone.Store(true)
			e.touch(old.lastUsed.Load())
		}()
		if ot := old.rec.Binding.Token; ot != r.Binding.Token {
			ts := s.tokenShard(ot)
			ts.mu.Lock()
			delete(ts.m, ot)
			ts.mu.Unlock()
		}
	}
	ts := s.tokenShard(r.Binding.Token)
	ts.mu.Lock()
	ts.m[r.Binding.Token] = e
	ts.mu.Unlock()
	is := s.idShard(r.ID)
	is.mu.Lock()
	is.m[r.ID] = e
	is.mu.Unlock()
	if old != nil && s.replacing != nil {
		s.replacing()
	}
}

// ByToken implements Store.
func (s *MemoryStore) ByToken(h TokenHash) (Record, bool) {
	e := s.entryByToken(h)
	if e == nil {
		return Record{}, false
	}
	return e.load(), true
}

// entryByToken is the entry bound to h, or nil.
func (s *MemoryStore) entryByToken(h TokenHash) *entry {
	ts := s.tokenShard(h)
	ts.mu.RLock()
	e := ts.m[h]
	ts.mu.RUnlock()
	return e
}

// ByID implements Store.
func (s *MemoryStore) ByID(id string) (Record, bool) {
	e := s.entryByID(id)
	if e == nil {
		return Record{}, false
	}
	return e.load(), true
}

// Tombstone implements Store.
func (s *MemoryStore) Tombstone(h TokenHash, now int64) (Tombstone, bool) {
	return s.tombs.get(h, now)
}

// PutTombstone keeps t unless it is past or its token has one already: for
// a store that mirrors tombstones kept elsewhere.
func (s *MemoryStore) PutTombstone(t Tombstone, now int64) { s.tombs.add(t, now) }

// Update implements Store.
func (s *MemoryStore) Update(_ context.Context, cur, next Record, t *Tombstone) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryByID(cur.ID)
	if e == nil || e.rec.Rev != cur.Rev {
		return ErrConflict
	}
	if t != nil {
		s.tombs.add(*t, 0) // the sweep forgets it once past
	}
	s.rev++
	next.ID, next.Rev = cur.ID, s.rev
	s.publish(e, next)
	return nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(_ context.Context, cur Record, t Tombstone) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryByID(cur.ID)
	if e == nil || e.rec.Rev != cur.Rev {
		return ErrConflict
	}
	s.tombs.add(t, 0)
	s.unpublish(e)
	return nil
}

// Remove drops the record of id whatever its Rev, after making t its
// tombstone when t is not nil; false if there was none. For a store that
// mirrors an authoritative copy kept elsewhere.
func (s *MemoryStore) Remove(id string, t *Tombstone, now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryByID(id)
	if e == nil {
		return false
	}
	if t != nil {
		s.tombs.add(*t, now)
	}
	s.unpublish(e)
	return true
}

// unpublish drops e from both indexes. The caller holds mu.
func (s *MemoryStore) unpublish(e *entry) {
	r := &e.rec
	ts := s.tokenShard(r.Binding.Token)
	ts.mu.Lock()
	delete(ts.m, r.Binding.Token)
	ts.mu.Unlock()
	is := s.idShard(r.ID)
	is.mu.Lock()
	delete(is.m, r.ID)
	is.mu.Unlock()
	e.gone.Store(true)
	s.count.Add(-1)
	if ident := s.perIdentity[r.Owner]; ident != nil {
		if ident.n--; ident.n <= 0 {
			delete(s.perIdentity, r.Owner)
		}
	}
}

// Touch implements Store. A use recorded on an entry that a concurrent
// change replaced is recorded again on the entry that replaced it.
func (s *MemoryStore) Touch(id string, at int64) {
	for e := s.entryByID(id); e != nil; e = s.entryByID(id) {
		e.touch(at)
		if !e.gone.Load() {
			return
		}
	}
}

// touchEntry records a use of e's session at, on e itself, found by a
// lookup of the session: without looking the session up again, unless e
// is gone since (then as Touch).
func (s *MemoryStore) touchEntry(e *entry, id string, at int64) {
	e.touch(at)
	if e.gone.Load() {
		s.Touch(id, at)
	}
}

// Range implements Store. Each shard is copied under its read lock and fn runs
// outside any lock, so fn may write to the store.
func (s *MemoryStore) Range(fn func(Record) bool) {
	var batch []*entry
	for i := range s.byID {
		is := &s.byID[i]
		is.mu.RLock()
		batch = batch[:0]
		for _, e := range is.m {
			batch = append(batch, e)
		}
		is.mu.RUnlock()
		for _, e := range batch {
			if !fn(e.load()) {
				return
			}
		}
	}
}

// Len implements Store.
func (s *MemoryStore) Len() int { return int(s.count.Load()) }

// Tombstones implements Store.
func (s *MemoryStore) Tombstones() int { return s.tombs.len() }

// Sweep implements Store.
func (s *MemoryStore) Sweep(now int64) { s.tombs.sweep(now) }

// Fresh implements Store: one process's memory is always current.
func (s *MemoryStore) Fresh() error { return nil }

// EstimatedBytes estimates the heap held by the store: the records, their
// bindings, their strings and the two index entries of each. The per-record
// figure follows the struct sizes of this build; map overhead assumes Go's
// swiss tables at their average load. BenchmarkSessionMemory compares it with
// the measured heap.
func (s *MemoryStore) EstimatedBytes() int64 {
	n := s.count.Load()
	return n * estimatedRecordBytes
}

// Sizes of a record's parts, rounded up to Go's allocation size classes. A
// session ID is 26 bytes (32-byte class), a fingerprint 43 (48-byte class).
var estimatedRecordBytes = int64(sizeClass(int(unsafe.Sizeof(entry{})))) +
	32 + 48 +
	// index entries: key + value + one control byte, at ~7/8 average load
	// plus the doubling slack of a growing table (×1.5 on average).
	mapEntryBytes(int(unsafe.Sizeof(TokenHash{}))+8) +
	mapEntryBytes(16+8)

// mapEntryBytes: key+value+control byte, at 7/8 load, times 3/2 for the
// average slack of a table that doubles as it grows.
func mapEntryBytes(kv int) int64 { return int64((kv + 1) * 8 * 3 / (7 * 2)) }

func sizeClass(n int) int {
	for _, c := range []int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256} {
		if n <= c {
			return c
		}
	}
	return (n + 255) &^ 255
}

// sortOldestFirst orders records by creation, then ID for a stable order.
func sortOldestFirst(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		if c := cmp.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
