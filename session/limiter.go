package session

import (
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/pkg/api"
)

// loginLimiter limits logins per SPIFFE ID with a token bucket each. A
// bucket exists only while its identity has logged in recently: sweep drops
// the full ones. Taking a token and dropping a bucket happen under one lock,
// so a sweep can never drop a bucket between its lookup and its use (which
// would hand the identity a fresh, full bucket).
type loginLimiter struct {
	limit rate.Limit // rate.Inf: no limit
	burst int

	mu      sync.Mutex
	buckets map[spiffeid.ID]*rate.Limiter
}

func newLoginLimiter(limit rate.Limit, burst int) *loginLimiter {
	return &loginLimiter{limit: limit, burst: burst, buckets: make(map[spiffeid.ID]*rate.Limiter)}
}

// allow takes a login token of id at now, or says how long to wait.
func (l *loginLimiter) allow(id spiffeid.ID, now time.Time) *Error {
	if l.limit == rate.Inf {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[id]
	if b == nil {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[id] = b
	}
	if b.AllowN(now, 1) {
		return nil
	}
	wait := time.Second
	if r := b.ReserveN(now, 1); r.OK() {
		wait = r.DelayFrom(now)
		r.CancelAt(now)
	}
	return &Error{Code: api.CodeRateLimited, Reason: ReasonRate, RetryAfter: max(wait, time.Millisecond)}
}

// sweep forgets the buckets that are full again at now.
func (l *loginLimiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, id)
		}
	}
}
