package session

import (
	"cmp"
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

// Record is one live session. Its identity, ID and times never change; the
// binding changes only through Store.Rebind, and the last use is an atomic.
type Record struct {
	ID        string
	Owner     spiffeid.ID
	CreatedAt int64 // Unix nanoseconds
	ExpiresAt int64 // Unix nanoseconds, the absolute end

	lastUsed atomic.Int64 // Unix nanoseconds
	binding  atomic.Pointer[Binding]
	ended    atomic.Bool
	grants   *grants // roles and approvals; nil without roles
}

// NewRecord makes a record for a new session.
func NewRecord(id string, owner spiffeid.ID, created, expires int64, b *Binding) *Record {
	r := &Record{ID: id, Owner: owner, CreatedAt: created, ExpiresAt: expires}
	r.lastUsed.Store(created)
	r.binding.Store(b)
	return r
}

// Binding returns the current binding.
func (r *Record) Binding() *Binding { return r.binding.Load() }

// LastUsed returns the last use in Unix nanoseconds.
func (r *Record) LastUsed() int64 { return r.lastUsed.Load() }

// Touch records a use at now (Unix nanoseconds). It never moves backwards.
func (r *Record) Touch(now int64) {
	for {
		old := r.lastUsed.Load()
		if now <= old || r.lastUsed.CompareAndSwap(old, now) {
			return
		}
	}
}

// Ended reports whether the record has been removed from its store.
func (r *Record) Ended() bool { return r.ended.Load() }

// Limits caps the live sessions a store accepts.
type Limits struct {
	Total, PerIdentity int
}

// Store keeps session records. Implementations must be safe for concurrent
// use; ByToken is the hot path and must not wait behind writers of other
// sessions. A store shared by several tetherd replicas can implement this
// interface without any change to package auth or the API.
type Store interface {
	// Insert adds r unless a limit is reached (then an *Error session_limit).
	Insert(r *Record, lim Limits) error
	// ByToken finds the live record bound to a token hash.
	ByToken(h TokenHash) *Record
	// ByID finds a live record by session ID.
	ByID(id string) *Record
	// Rebind replaces r's binding old with next; false if old is no longer
	// current (a concurrent rebind won) or r is gone.
	Rebind(r *Record, old, next *Binding) bool
	// Delete removes r; true only for the call that removed it.
	Delete(r *Record) bool
	// Range calls fn for every live record (in no order) until fn returns false.
	Range(fn func(*Record) bool)
	// Len is the number of live records.
	Len() int
}

const shardCount = 256

// MemoryStore is the in-memory Store. Records are indexed by token hash in
// shards picked by the hash's first byte, and by session ID in shards picked
// by a seeded hash of the ID. A single mutation lock serialises inserts,
// rebinds and deletes (so caps hold exactly); lookups take only one shard's
// read lock.
type MemoryStore struct {
	mu          sync.Mutex // serialises mutations; never taken by lookups
	perIdentity map[spiffeid.ID]*identity

	seed    maphash.Seed
	byToken [shardCount]tokenShard
	byID    [shardCount]idShard
	count   atomic.Int64 // live records: changed under mu, read without it
}

// identity is the count of one SPIFFE ID's sessions and its canonical ID
// value, shared by all its records so the ID's strings are held once.
type identity struct {
	id spiffeid.ID
	n  int
}

type tokenShard struct {
	mu sync.RWMutex
	m  map[TokenHash]*Record
	_  [40]byte // keep shards on separate cache lines
}

type idShard struct {
	mu sync.RWMutex
	m  map[string]*Record
	_  [40]byte
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{perIdentity: make(map[spiffeid.ID]*identity), seed: maphash.MakeSeed()}
	for i := range s.byToken {
		s.byToken[i].m = make(map[TokenHash]*Record)
		s.byID[i].m = make(map[string]*Record)
	}
	return s
}

func (s *MemoryStore) tokenShard(h TokenHash) *tokenShard { return &s.byToken[h[0]] }

func (s *MemoryStore) idShard(id string) *idShard {
	return &s.byID[maphash.String(s.seed, id)%shardCount]
}

// Insert implements Store.
func (s *MemoryStore) Insert(r *Record, lim Limits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim.Total > 0 && s.count.Load() >= int64(lim.Total) {
		return reject(api.CodeSessionLimit, ReasonLimitTotal)
	}
	ident := s.perIdentity[r.Owner]
	if ident != nil && lim.PerIdentity > 0 && ident.n >= lim.PerIdentity {
		return reject(api.CodeSessionLimit, ReasonLimitIdentity)
	}
	if ident == nil {
		ident = &identity{id: r.Owner}
		s.perIdentity[r.Owner] = ident
	}
	ident.n++
	r.Owner = ident.id // share the strings; r is not yet visible to others
	s.count.Add(1)
	b := r.Binding()
	ts := s.tokenShard(b.Token)
	ts.mu.Lock()
	ts.m[b.Token] = r
	ts.mu.Unlock()
	is := s.idShard(r.ID)
	is.mu.Lock()
	is.m[r.ID] = r
	is.mu.Unlock()
	return nil
}

// ByToken implements Store.
func (s *MemoryStore) ByToken(h TokenHash) *Record {
	ts := s.tokenShard(h)
	ts.mu.RLock()
	r := ts.m[h]
	ts.mu.RUnlock()
	return r
}

// ByID implements Store.
func (s *MemoryStore) ByID(id string) *Record {
	is := s.idShard(id)
	is.mu.RLock()
	r := is.m[id]
	is.mu.RUnlock()
	return r
}

// Rebind implements Store.
func (s *MemoryStore) Rebind(r *Record, old, next *Binding) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Ended() || r.binding.Load() != old {
		return false
	}
	os := s.tokenShard(old.Token)
	os.mu.Lock()
	delete(os.m, old.Token)
	os.mu.Unlock()
	r.binding.Store(next)
	ns := s.tokenShard(next.Token)
	ns.mu.Lock()
	ns.m[next.Token] = r
	ns.mu.Unlock()
	return true
}

// Delete implements Store.
func (s *MemoryStore) Delete(r *Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ended.Swap(true) {
		return false
	}
	b := r.Binding()
	ts := s.tokenShard(b.Token)
	ts.mu.Lock()
	delete(ts.m, b.Token)
	ts.mu.Unlock()
	is := s.idShard(r.ID)
	is.mu.Lock()
	delete(is.m, r.ID)
	is.mu.Unlock()
	s.count.Add(-1)
	if ident := s.perIdentity[r.Owner]; ident != nil {
		if ident.n--; ident.n <= 0 {
			delete(s.perIdentity, r.Owner)
		}
	}
	return true
}

// Range implements Store. Each shard is copied under its read lock and fn runs
// outside any lock, so fn may call Delete.
func (s *MemoryStore) Range(fn func(*Record) bool) {
	var batch []*Record
	for i := range s.byID {
		is := &s.byID[i]
		is.mu.RLock()
		batch = batch[:0]
		for _, r := range is.m {
			batch = append(batch, r)
		}
		is.mu.RUnlock()
		for _, r := range batch {
			if !fn(r) {
				return
			}
		}
	}
}

// Len implements Store.
func (s *MemoryStore) Len() int { return int(s.count.Load()) }

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
var estimatedRecordBytes = int64(sizeClass(int(unsafe.Sizeof(Record{})))) +
	int64(sizeClass(int(unsafe.Sizeof(Binding{})))) +
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
func sortOldestFirst(rs []*Record) {
	slices.SortFunc(rs, func(a, b *Record) int {
		if c := cmp.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
