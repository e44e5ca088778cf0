package session_test

// Load with invariants: many goroutines log in, validate, rebind, revoke, log
// out and move a shared clock past sessions' ends, against one Manager with
// its sweeper running, under -race. The invariants are checked on every
// answer while the load runs and once more at the end:
//
//   - a token is accepted only from the identity and over the leaf it was
//     minted for, and never once its session's revocation, logout or
//     rebind (for the token it replaced) has returned, nor past the end;
//   - every session that did not end is still accepted at the end with its
//     latest token (no live session lost), and every end is accounted for
//     by a call we made or by the clock;
//   - the live count is exact, and the caps hold exactly under contention.
//
// Session ends are observed through the security-event log (session.ended),
// an independent channel from the calls' answers.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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

// ldClock is a shared clock that only moves forward.
type ldClock struct{ ns atomic.Int64 }

func (c *ldClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *ldClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// ldEvents records every session.ended event with the clock at that moment.
type ldEvents struct {
	clock *ldClock
	mu    sync.Mutex
	ended map[string][]ldEnd // session ID -> ends (must be at most one)
}

type ldEnd struct {
	cause string
	at    time.Time
}

func (e *ldEvents) Enabled(context.Context, slog.Level) bool { return true }
func (e *ldEvents) WithAttrs([]slog.Attr) slog.Handler       { return e }
func (e *ldEvents) WithGroup(string) slog.Handler            { return e }
func (e *ldEvents) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "session.ended" {
		return nil
	}
	var id, cause string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "session_id":
			id = a.Value.String()
		case "cause":
			cause = a.Value.String()
		}
		return true
	})
	at := e.clock.Now()
	e.mu.Lock()
	e.ended[id] = append(e.ended[id], ldEnd{cause: cause, at: at})
	e.mu.Unlock()
	return nil
}

func (e *ldEvents) endsOf(id string) []ldEnd {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ended[id]
}

// ldBinding is one token and the leaf it was minted for: a token's binding
// never changes (a rebind mints a new token).
type ldBinding struct {
	token string
	peer  session.Peer
}

// ldSession is what the test knows of a session it opened.
type ldSession struct {
	id      string
	owner   spiffeid.ID
	expires time.Time
	binding atomic.Pointer[ldBinding]
	// stopped is set once a Revoke, Logout or RevokeIdentity that covers
	// this session has returned: from then on it must never be accepted.
	stopped atomic.Bool
	// askedEnd records that we asked for its end (cause revoked or logout).
	askedEnd atomic.Bool
}

// ldWorld is the shared state of one load run.
type ldWorld struct {
	t      *testing.T
	m      *session.Manager
	clock  *ldClock
	ids    []spiffeid.ID
	leaves map[spiffeid.ID][]session.Peer

	mu       sync.Mutex
	sessions []*ldSession

	// tokens maps every token ever minted to its binding; dead holds the
	// tokens replaced by a rebind that returned.
	tokens sync.Map // string -> *ldBinding
	dead   sync.Map // string -> struct{}

	// revoking counts, per identity, the RevokeIdentity calls begun and
	// those running: a login that overlaps one may be ended by it.
	revoking map[spiffeid.ID]*ldRevoking

	violations atomic.Int64
	countsMu   sync.Mutex
	counts     map[string]int
}

type ldRevoking struct{ begun, running atomic.Int64 }

func (w *ldWorld) violate(format string, args ...any) {
	w.violations.Add(1)
	w.t.Errorf("VIOLATION: "+format, args...)
}

func (w *ldWorld) count(op string) {
	w.countsMu.Lock()
	defer w.countsMu.Unlock()
	w.counts[op]++
}

func (w *ldWorld) add(s *ldSession) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sessions = append(w.sessions, s)
}

// pick returns a random known session, of owner if it is not zero,
// preferring one nobody has ended yet.
func (w *ldWorld) pick(rng *rand.Rand, owner spiffeid.ID) *ldSession {
	w.mu.Lock()
	defer w.mu.Unlock()
	var found *ldSession
	for range 16 {
		if len(w.sessions) == 0 {
			break
		}
		s := w.sessions[rng.IntN(len(w.sessions))]
		if !owner.IsZero() && s.owner != owner {
			continue
		}
		found = s
		if !s.stopped.Load() {
			break
		}
	}
	return found
}

func (w *ldWorld) sessionsOf(owner spiffeid.ID) []*ldSession {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*ldSession
	for _, s := range w.sessions {
		if s.owner == owner {
			out = append(out, s)
		}
	}
	return out
}

func ldCode(err error) api.Code {
	var se *session.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// checkAccepted is run on every successful Validate: the token was minted
// for exactly this identity and leaf, was not replaced by a rebind that
// returned before the call, its session was not revoked before the call, and
// the clock at the call was before the session's end.
func (w *ldWorld) checkAccepted(op string, b *ldBinding, peer session.Peer, s *ldSession, deadBefore, stoppedBefore bool, t0 time.Time) {
	v, _ := w.tokens.Load(b.token)
	minted, ok := v.(*ldBinding)
	if !ok {
		w.violate("%s: accepted a token never minted", op)
		return
	}
	if minted.peer != peer {
		w.violate("%s: token of %s/%s accepted from %s/%s", op, minted.peer.ID, minted.peer.Fingerprint, peer.ID, peer.Fingerprint)
	}
	if deadBefore {
		w.violate("%s: token accepted after the rebind that replaced it returned (session %s)", op, s.id)
	}
	if stoppedBefore {
		w.violate("%s: session %s accepted after its revocation returned", op, s.id)
	}
	if !t0.Before(s.expires) {
		w.violate("%s: session %s accepted at %s, past its end %s", op, s.id, t0, s.expires)
	}
}

// checkOwnRefusal checks the refusal of a genuine token to its owner: one of
// the codes want, or invalid_token (unknown_session) once the clock is past
// the session's end, when the token's tombstone is no longer kept. The load
// runs with tombstone caps it never reaches, so none is evicted.
func (w *ldWorld) checkOwnRefusal(op string, err error, s *ldSession, want ...api.Code) {
	c := ldCode(err)
	for _, ok := range want {
		if c == ok {
			return
		}
	}
	var se *session.Error
	if c == api.CodeInvalidToken && errors.As(err, &se) && se.Reason == session.ReasonUnknown && !w.clock.Now().Before(s.expires) {
		return
	}
	w.violate("%s: code %s (%v), want %v", op, c, err, want)
}

// worker runs ops random operations as identity me.
func (w *ldWorld) worker(seed uint64, me spiffeid.ID, ops int) {
	// A seeded, reproducible mix of operations, not a secret.
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) //nolint:gosec // G404: the load's operation mix needs no unpredictability
	ctx := context.Background()
	myLeaves := w.leaves[me]
	for range ops {
		switch op := rng.IntN(100); {
		case op < 18: // login over one of my leaves
			peer := myLeaves[rng.IntN(len(myLeaves))]
			rv := w.revoking[me]
			begun0 := rv.begun.Load() // begun first, then running (see revoke_identity)
			running0 := rv.running.Load()
			tok, info, err := w.m.Login(ctx, peer)
			if err != nil {
				if ldCode(err) != api.CodeSessionLimit {
					w.violate("login: %v", err)
				}
				w.count("login.refused")
				continue
			}
			w.count("login")
			b := &ldBinding{token: tok, peer: peer}
			w.tokens.Store(tok, b)
			s := &ldSession{id: info.ID, owner: me, expires: info.ExpiresAt}
			s.binding.Store(b)
			w.add(s)
			if running0 > 0 || rv.running.Load() > 0 || rv.begun.Load() != begun0 {
				s.askedEnd.Store(true) // a RevokeIdentity of mine overlapped the login
			}

		case op < 60: // validate one of my sessions over its leaf
			s := w.pick(rng, me)
			if s == nil {
				continue
			}
			b := s.binding.Load()
			_, deadBefore := w.dead.Load(b.token)
			stoppedBefore := s.stopped.Load()
			t0 := w.clock.Now()
			_, err := w.m.Validate(ctx, b.token, b.peer)
			if err == nil {
				w.count("validate.ok")
				w.checkAccepted("validate", b, b.peer, s, deadBefore, stoppedBefore, t0)
				continue
			}
			w.count("validate.refused")
			// A genuine token of the caller's: ended, expired or replaced by
			// a rebind, the answer is session_ended; invalid_token only once
			// the token is past its exp (its tombstone is gone).
			w.checkOwnRefusal("validate own genuine token", err, s, api.CodeSessionEnded)

		case op < 70: // my token over another of my leaves: never accepted
			s := w.pick(rng, me)
			if s == nil {
				continue
			}
			b := s.binding.Load()
			other := myLeaves[rng.IntN(len(myLeaves))]
			if other == b.peer {
				continue
			}
			if _, err := w.m.Validate(ctx, b.token, other); err == nil {
				w.violate("token of leaf %s accepted over leaf %s", b.peer.Fingerprint, other.Fingerprint)
			} else {
				w.checkOwnRefusal("own token over another leaf", err, s, api.CodeCertificateRotated, api.CodeSessionEnded)
			}
			w.count("validate.other_leaf")

		case op < 78: // another identity's token: never accepted, always invalid_token
			s := w.pick(rng, spiffeid.ID{})
			if s == nil || s.owner == me {
				continue
			}
			b := s.binding.Load()
			thief := myLeaves[rng.IntN(len(myLeaves))]
			if _, err := w.m.Validate(ctx, b.token, thief); err == nil {
				w.violate("token of %s accepted from %s", s.owner, me)
			} else if c := ldCode(err); c != api.CodeInvalidToken {
				w.violate("another identity's token: code %s, want invalid_token", c)
			}
			if _, ok := w.m.Introspect(ctx, b.token, thief.Fingerprint); ok {
				w.violate("introspect active for a leaf the token is not bound to")
			}
			w.count("validate.other_identity")

		case op < 88: // rebind one of my sessions to another of my leaves
			s := w.pick(rng, me)
			if s == nil {
				continue
			}
			b := s.binding.Load()
			next := myLeaves[rng.IntN(len(myLeaves))]
			if next == b.peer {
				continue
			}
			tok, info, err := w.m.Rebind(ctx, b.token, next)
			if err != nil {
				w.checkOwnRefusal("rebind", err, s, api.CodeSessionEnded)
				w.count("rebind.refused")
				continue
			}
			if info.ID != s.id || !info.ExpiresAt.Equal(s.expires) {
				w.violate("rebind moved session %s (end %s) to %s (end %s)", s.id, s.expires, info.ID, info.ExpiresAt)
			}
			nb := &ldBinding{token: tok, peer: next}
			w.tokens.Store(tok, nb)
			if !s.binding.CompareAndSwap(b, nb) {
				w.violate("two rebinds of session %s from one token both succeeded", s.id)
			}
			w.dead.Store(b.token, struct{}{})
			w.count("rebind")

		case op < 92: // revoke any session by ID
			s := w.pick(rng, spiffeid.ID{})
			if s == nil {
				continue
			}
			s.askedEnd.Store(true)
			err := w.m.Revoke(ctx, s.id)
			s.stopped.Store(true)
			if err != nil && ldCode(err) != api.CodeNotFound {
				w.violate("revoke: %v", err)
			}
			w.count("revoke")

		case op < 94: // log out of one of mine
			s := w.pick(rng, me)
			if s == nil {
				continue
			}
			s.askedEnd.Store(true)
			err := w.m.Logout(ctx, s.id)
			s.stopped.Store(true)
			if err != nil && ldCode(err) != api.CodeNotFound {
				w.violate("logout: %v", err)
			}
			w.count("logout")

		case op < 95: // revoke every session of an identity
			victim := w.ids[rng.IntN(len(w.ids))]
			// Announced before the sessions are listed, running before
			// begun (a login reads them in the other order): a login of
			// the victim either returned and was added before the list,
			// or sees this call running or begun (see the login case).
			rv := w.revoking[victim]
			rv.running.Add(1)
			rv.begun.Add(1)
			covered := w.sessionsOf(victim)
			for _, s := range covered {
				s.askedEnd.Store(true)
			}
			must(w.m.RevokeIdentity(ctx, victim))
			rv.running.Add(-1)
			for _, s := range covered {
				s.stopped.Store(true)
			}
			w.count("revoke_identity")

		default: // time passes
			w.clock.Advance(time.Duration(rng.IntN(40)) * time.Second)
			w.count("tick")
		}
	}
}

func newLdWorld(t *testing.T, cfg session.Config, identities, leavesEach int) (*ldWorld, *ldEvents) {
	t.Helper()
	clock := &ldClock{}
	clock.ns.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
	events := &ldEvents{clock: clock, ended: map[string][]ldEnd{}}
	// The test's own configuration, whole (zero fields are the package's
	// defaults), on the world's clock and event log.
	m, _ := session.NewTestManager(t, func(c *session.Config) {
		issuer := c.Issuer
		*c = cfg
		c.Issuer, c.Now, c.Logger = issuer, clock.Now, slog.New(events)
		if c.LoginRate == 0 {
			c.LoginRate = rate.Inf
		}
	})
	w := &ldWorld{
		t: t, m: m, clock: clock, leaves: map[spiffeid.ID][]session.Peer{},
		revoking: map[spiffeid.ID]*ldRevoking{}, counts: map[string]int{},
	}
	for i := range identities {
		id := spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/admin/user%d", i))
		w.ids = append(w.ids, id)
		w.revoking[id] = &ldRevoking{}
		for j := range leavesEach {
			w.leaves[id] = append(w.leaves[id], session.Peer{ID: id, Fingerprint: fmt.Sprintf("fp-%d-%d-%043d", i, j, 0)[:43]})
		}
	}
	return w, events
}

func TestLoadInvariants(t *testing.T) {
	const (
		identities   = 6
		leavesEach   = 3
		perIdentity  = 6
		total        = 30 // below identities*perIdentity: both caps are reached
		workersEach  = 3
		opsPerWorker = 600
	)
	ops := opsPerWorker
	if testing.Short() {
		ops /= 4
	}
	w, events := newLdWorld(t, session.Config{
		TTL: 20 * time.Minute, IdleTimeout: 20 * time.Minute,
		MaxSessions: total, MaxSessionsPerIdentity: perIdentity,
		MaxTombstones: 1 << 20, MaxTombstonesPerIdentity: 1 << 20, // never evicted here
		SweepInterval: time.Millisecond, // the sweeper races with everything
	}, identities, leavesEach)

	// A monitor samples the live count: it never exceeds the cap.
	stop := make(chan struct{})
	var monitor sync.WaitGroup
	monitor.Add(1)
	go func() {
		defer monitor.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := w.m.Len(); n > total || n < 0 {
				w.violate("live count %d outside [0, %d]", n, total)
			}
		}
	}()

	deadline := time.AfterFunc(2*time.Minute, func() { t.Error("load did not finish within 2 minutes") })
	defer deadline.Stop()
	var wg sync.WaitGroup
	var seed uint64
	for _, id := range w.ids {
		for range workersEach {
			seed++
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				w.worker(seed, id, ops)
			}(seed)
		}
	}
	wg.Wait()
	close(stop)
	monitor.Wait()

	// Final accounting, with the clock frozen: sweep, then every session is
	// either ended (once, for a reason we caused) or accepted.
	ctx := context.Background()
	w.m.Sweep(ctx)
	now := w.clock.Now()
	live := 0
	perOwner := map[spiffeid.ID]int{}
	for _, s := range w.sessions {
		ends := events.endsOf(s.id)
		if len(ends) > 1 {
			w.violate("session %s ended %d times: %v", s.id, len(ends), ends)
		}
		b := s.binding.Load()
		_, err := w.m.Validate(ctx, b.token, b.peer)
		if len(ends) == 0 {
			if err != nil {
				w.violate("session %s lost: not ended, yet refused: %v", s.id, err)
			}
			if !now.Before(s.expires) {
				w.violate("session %s past its end %s at %s but not ended after a sweep", s.id, s.expires, now)
			}
			live++
			perOwner[s.owner]++
			continue
		}
		if err == nil {
			w.violate("session %s ended (%s) but still accepted", s.id, ends[0].cause)
		}
		switch end := ends[0]; end.cause {
		case session.CauseExpired:
			if end.at.Before(s.expires) {
				w.violate("session %s ended as expired at %s, before its end %s", s.id, end.at, s.expires)
			}
		case session.CauseRevoked, session.CauseLogout:
			if !s.askedEnd.Load() {
				w.violate("session %s ended (%s) though nobody asked", s.id, end.cause)
			}
		default:
			w.violate("session %s ended with cause %q", s.id, end.cause)
		}
	}
	if got := w.m.Len(); got != live {
		w.violate("live count %d, want exactly %d", got, live)
	}
	if got := len(must(w.m.List(nil))); got != live {
		w.violate("List has %d sessions, want %d", got, live)
	}
	for owner, n := range perOwner {
		if n > perIdentity {
			w.violate("%s holds %d sessions, cap %d", owner, n, perIdentity)
		}
	}
	t.Logf("sessions opened %d, live at the end %d; operations %v", len(w.sessions), live, w.counts)
	for _, op := range []string{"login", "validate.ok", "rebind", "revoke", "tick"} {
		require.NotZero(t, w.counts[op], "the load never did %s: the mix is too thin to prove anything", op)
	}
	require.NotZero(t, len(w.sessions)-live, "no session ended during the load")
}

// TestLoadCapsExact: logins racing for the last places get exactly the caps,
// never one more, and every refusal is session_limit.
func TestLoadCapsExact(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, total, perIdentity, identities, goroutines, each int) (ok int, w *ldWorld) {
		t.Helper()
		w, _ = newLdWorld(t, session.Config{MaxSessions: total, MaxSessionsPerIdentity: perIdentity, SweepInterval: time.Hour}, identities, 1)
		var okCount atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				peer := w.leaves[w.ids[g%identities]][0]
				for range each {
					_, _, err := w.m.Login(ctx, peer)
					switch {
					case err == nil:
						okCount.Add(1)
					case ldCode(err) != api.CodeSessionLimit:
						t.Errorf("login: %v, want session_limit", err)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		return int(okCount.Load()), w
	}

	t.Run("total", func(t *testing.T) {
		ok, w := run(t, 40, 100, 8, 32, 10)
		require.False(t, ok != 40 || w.m.Len() != 40, "%d logins succeeded, %d live; want exactly 40", ok, w.m.Len())
	})
	t.Run("per-identity", func(t *testing.T) {
		ok, w := run(t, 1000, 7, 1, 32, 10)
		require.False(t, ok != 7 || w.m.Len() != 7 || len(must(w.m.List(&w.ids[0]))) != 7, "%d logins succeeded, %d live; want exactly 7", ok, w.m.Len())
	})
	t.Run("both", func(t *testing.T) {
		ok, w := run(t, 20, 3, 10, 40, 5)
		require.False(t, ok != 20 || w.m.Len() != 20, "%d logins succeeded, %d live; want exactly 20", ok, w.m.Len())
		for _, id := range w.ids {
			require.LessOrEqual(t, len(must(w.m.List(&id))), 3, "%s holds more sessions than its cap", id)
		}
	})
	t.Run("churn", func(t *testing.T) {
		// Revocations free places while logins race for them: the count
		// never passes the cap, and at the end it is exactly the logins
		// that succeeded minus the revocations that did.
		w, _ := newLdWorld(t, session.Config{MaxSessions: 10, MaxSessionsPerIdentity: 10, SweepInterval: time.Hour}, 4, 1)
		var logins, revokes atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				peer := w.leaves[w.ids[g%4]][0]
				for range 60 {
					if _, info, err := w.m.Login(ctx, peer); err == nil {
						logins.Add(1)
						if n := w.m.Len(); n > 10 {
							t.Errorf("live count %d over the cap 10", n)
						}
						if g%2 == 0 && w.m.Revoke(ctx, info.ID) == nil {
							revokes.Add(1)
						}
					} else if ldCode(err) != api.CodeSessionLimit {
						t.Errorf("login: %v", err)
					}
					if g%4 == 1 {
						if n := must(w.m.RevokeIdentity(ctx, peer.ID)); n > 0 {
							revokes.Add(int64(n))
						}
					}
				}
			}()
		}
		wg.Wait()
		want := int(logins.Load() - revokes.Load())
		require.Equal(t, want, w.m.Len(), "live, want logins %d - revocations %d", logins.Load(), revokes.Load())
		require.Len(t, must(w.m.List(nil)), want, "listed")
	})
}
