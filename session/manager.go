package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/pkg/api"
)

// Defaults of Config, the contract's defaults of tetherd.
const (
	DefaultTTL                    = 8 * time.Hour
	DefaultIdleTimeout            = 15 * time.Minute
	DefaultMaxSessions            = 10000
	DefaultMaxSessionsPerIdentity = 16
	DefaultLoginRate              = rate.Limit(1)
	DefaultLoginBurst             = 10
	DefaultSweepInterval          = time.Second
	// DefaultTombstonesPerSession is how many tombstones are kept per
	// session of the caps, when Config does not say: MaxTombstones defaults
	// to this times MaxSessions, MaxTombstonesPerIdentity to this times
	// MaxSessionsPerIdentity (64 with the defaults).
	DefaultTombstonesPerSession = 4
	// TombstoneGrace is how long past a token's exp its tombstone is kept:
	// an owner who comes back soon after the absolute end of a session
	// still gets session_ended (the contract's answer for an expired
	// session), not invalid_token.
	TombstoneGrace = time.Hour
)

// Causes of a session's end, as logged and counted.
const (
	CauseExpired = "expired"
	CauseIdle    = "idle"
	CauseLogout  = "logout"
	CauseRevoked = "revoked"
	CauseDenied  = "denied" // an approver denied the session's roles
)

// Config configures a Manager. Zero values take the defaults above.
type Config struct {
	// Issuer is the SPIFFE ID of the service issuing the tokens: their iss
	// and aud. Required.
	Issuer spiffeid.ID
	// TTL is a session's absolute lifetime; IdleTimeout ends a session not
	// used for that long.
	TTL, IdleTimeout time.Duration
	// MaxSessions and MaxSessionsPerIdentity cap live sessions.
	MaxSessions, MaxSessionsPerIdentity int
	// MaxTombstones and MaxTombstonesPerIdentity cap the tombstones of
	// ended and replaced tokens (see the package doc); beyond a cap the
	// oldest is forgotten. Default DefaultTombstonesPerSession times the
	// session caps.
	MaxTombstones, MaxTombstonesPerIdentity int
	// LoginRate and LoginBurst limit logins per SPIFFE ID; rate.Inf turns
	// the limit off.
	LoginRate  rate.Limit
	LoginBurst int
	// Store keeps the sessions; default a new MemoryStore with the
	// tombstone caps above.
	Store Store
	// Key signs the tokens; default a new one. A store shared by replicas
	// signs its records with the same key.
	Key *Key
	// Logger receives the security events; default silent.
	Logger *slog.Logger
	// Roles are the roles sessions may hold (see Role); none by default.
	Roles []Role
	// Registerer, if set, receives the session metrics (counters of
	// logins, rebinds, ends and refusals; gauges of live sessions, the
	// store's estimated bytes and tombstones).
	Registerer prometheus.Registerer
	// SweepInterval is how often expired sessions are reclaimed.
	SweepInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Peer is the authenticated caller: its SPIFFE ID, the x5t#S256
// fingerprint of the leaf certificate it connected with, and that leaf's
// validity.
type Peer struct {
	ID          spiffeid.ID
	Fingerprint string
	// NotBefore is the leaf certificate's NotBefore; zero means unknown.
	// Rebind moves a session only to a leaf strictly newer than the bound
	// one, so a caller should always set it.
	NotBefore time.Time
	// NotAfter is the leaf's expiry: the HTTP layer refuses a request over
	// a connection whose leaf has expired since it was opened.
	NotAfter time.Time
}

// Info is the public view of a session. It holds no token.
type Info struct {
	ID            string
	SPIFFEID      spiffeid.ID
	Fingerprint   string
	CreatedAt     time.Time
	LastUsedAt    time.Time
	ExpiresAt     time.Time
	IdleExpiresAt time.Time
	// Roles the session holds, sorted; State is api.StateActive or
	// api.StatePending; Approvals are those received so far.
	Roles     []string
	State     string
	Approvals []Approval
	// AuthenticatedAt is when the owner logged in (a rebind keeps it).
	AuthenticatedAt time.Time
}

// Manager issues, checks, rebinds and ends sessions. It is safe for
// concurrent use. Close stops its background sweeper.
type Manager struct {
	issuer  spiffeid.ID
	iss     string
	ttl     time.Duration
	idle    time.Duration
	limits  Limits
	store   Store
	mem     *MemoryStore // store, when it is the in-process one
	roles   roleSet
	keys    *Key
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	logins *loginLimiter

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewManager makes a Manager with a fresh signing key and starts its sweeper.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Issuer.IsZero() {
		return nil, fmt.Errorf("session: an issuer SPIFFE ID is required")
	}
	if cfg.TTL < 0 || cfg.IdleTimeout < 0 || cfg.MaxSessions < 0 || cfg.MaxSessionsPerIdentity < 0 ||
		cfg.MaxTombstones < 0 || cfg.MaxTombstonesPerIdentity < 0 || cfg.LoginRate < 0 || cfg.LoginBurst < 0 {
		return nil, fmt.Errorf("session: negative limit in config")
	}
	roles, err := newRoleSet(cfg.Roles)
	if err != nil {
		return nil, err
	}
	keys := cfg.Key
	if keys == nil {
		if keys, err = NewKey(); err != nil {
			return nil, err
		}
	}
	m := &Manager{
		roles:  roles,
		issuer: cfg.Issuer,
		iss:    cfg.Issuer.String(),
		ttl:    orDefault(cfg.TTL, DefaultTTL),
		idle:   orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		limits: Limits{Total: orDefault(cfg.MaxSessions, DefaultMaxSessions), PerIdentity: orDefault(cfg.MaxSessionsPerIdentity, DefaultMaxSessionsPerIdentity)},
		store:  cfg.Store,
		keys:   keys,
		log:    cfg.Logger,
		now:    cfg.Now,
		logins: newLoginLimiter(orDefault(cfg.LoginRate, DefaultLoginRate), orDefault(cfg.LoginBurst, DefaultLoginBurst)),
	}
	if m.store == nil {
		m.store = NewMemoryStore(cfg.TombstoneCaps())
	}
	m.mem, _ = m.store.(*MemoryStore)
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if cfg.Registerer != nil {
		m.metrics = newMetrics(cfg.Registerer, m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	interval := orDefault(cfg.SweepInterval, DefaultSweepInterval)
	m.wg.Add(1)
	go m.sweepLoop(ctx, interval)
	return m, nil
}

// TombstoneCaps are the caps on tombstones that c sets, or their defaults
// (DefaultTombstonesPerSession times the session caps): what a store made
// for a Manager of c should keep.
func (c Config) TombstoneCaps() (total, perIdentity int) {
	return orDefault(c.MaxTombstones, DefaultTombstonesPerSession*orDefault(c.MaxSessions, DefaultMaxSessions)),
		orDefault(c.MaxTombstonesPerIdentity, DefaultTombstonesPerSession*orDefault(c.MaxSessionsPerIdentity, DefaultMaxSessionsPerIdentity))
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Close stops the sweeper. It is safe to call more than once. Sessions stay
// readable but nothing reclaims them any more.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
	})
	return nil
}

// Issuer is the SPIFFE ID in the tokens' iss and aud.
func (m *Manager) Issuer() spiffeid.ID { return m.issuer }

// Store is the manager's store.
func (m *Manager) Store() Store { return m.store }

// Login opens a session for peer and returns its token. The caller must have
// decided that peer may log in. The session holds the roles asked for (each
// must be held by peer's identity), or without any, the identity's roles
// that need neither approval nor a shorter lifetime; with a role that needs
// approvals it starts pending (its token refused with approval_pending until
// Decide approves it). Refusals (*Error): rate_limited, session_limit,
// forbidden (a role not held).
func (m *Manager) Login(ctx context.Context, peer Peer, roles ...string) (string, Info, error) {
	if err := m.store.Fresh(); err != nil {
		return "", Info{}, err
	}
	granted, approvals, roleTTL, gerr := m.roles.grant(peer.ID, roles)
	if gerr != nil {
		var se *Error
		if errors.As(gerr, &se) {
			m.denied(ctx, EventLoginDenied, peer, "", se.Code, se.Reason)
		}
		return "", Info{}, gerr
	}
	if err := m.logins.allow(peer.ID, m.now()); err != nil {
		m.denied(ctx, EventLoginDenied, peer, "", err.Code, err.Reason)
		return "", Info{}, err
	}
	id, err := randomID()
	if err != nil {
		return "", Info{}, err
	}
	now := m.now()
	ttl := m.ttl
	if roleTTL > 0 {
		ttl = min(ttl, roleTTL)
	}
	exp := now.Add(ttl).Truncate(time.Second) // exp is whole seconds in the token
	tok, err := m.keys.mint(&claims{
		Issuer: m.iss, Audience: m.iss, Subject: peer.ID.String(), ID: id,
		IssuedAt: now.Unix(), Expiry: exp.Unix(), CNF: api.CNF{X5TS256: peer.Fingerprint},
		AuthTime: now.Unix(), Roles: granted,
	})
	if err != nil {
		return "", Info{}, err
	}
	r := Record{
		ID: id, Owner: peer.ID, CreatedAt: now.UnixNano(), ExpiresAt: exp.UnixNano(), LastUsed: now.UnixNano(),
		Binding: Binding{Token: hashToken(tok), Fingerprint: peer.Fingerprint, NotBefore: peer.NotBefore},
		Roles:   granted, Needed: approvals,
	}
	err = m.store.Insert(ctx, r, m.limits)
	var se *Error
	if errors.As(err, &se) && se.Code == api.CodeSessionLimit && m.endLapsed(ctx, peer.ID, se.Reason) > 0 {
		// The cap counted sessions that had ended (expired or idle) but
		// that no sweep had removed yet: the caps are of live sessions.
		err = m.store.Insert(ctx, r, m.limits)
	}
	if err != nil {
		if errors.As(err, &se) {
			m.denied(ctx, EventLoginDenied, peer, "", se.Code, se.Reason)
		}
		return "", Info{}, err
	}
	m.metrics.created()
	info := m.info(&r)
	m.event(ctx, slog.LevelInfo, "session.created", peer, slog.String("session_id", id), slog.Time("expires_at", info.ExpiresAt),
		slog.Any("roles", info.Roles), slog.String("state", info.State))
	if approvals > 0 {
		m.event(ctx, slog.LevelWarn, "session.approval_requested", peer, slog.String("session_id", id),
			slog.Any("roles", granted), slog.Int("approvals_needed", approvals))
	}
	return tok, info, nil
}

// Use is a token accepted by Check whose use is not yet recorded. Info is
// the session as it will be once Commit records the use (LastUsedAt is the
// time of the check). A Use is a small value: passing it allocates nothing.
type Use struct {
	Info Info

	s  Store
	e  *entry // with the in-process store, the entry the check read
	at int64  // the time of the check, Unix nanoseconds
}

// Commit records the use: the session's idle clock restarts from the time
// of the check. It is a no-op on the zero Use and once the session has
// ended; committing twice is harmless.
func (u Use) Commit() { u.Mark().Commit() }

// Mark is what Commit needs of u, without the session's Info: a layer that
// holds the use until it knows the answer keeps a Mark, a quarter of the
// size.
func (u Use) Mark() UseMark { return UseMark{s: u.s, e: u.e, id: u.Info.ID, at: u.at} }

// UseMark is a Use without its Info (see Use.Mark).
type UseMark struct {
	s  Store
	e  *entry
	id string
	at int64
}

// Commit is Use.Commit. With the in-process store the use is recorded on
// the entry the check read, without a second lookup (see
// MemoryStore.touchEntry).
func (m UseMark) Commit() {
	switch {
	case m.e != nil:
		m.s.(*MemoryStore).touchEntry(m.e, m.id, m.at) //nolint:forcetypeassert // e is set only with a *MemoryStore
	case m.s != nil:
		m.s.Touch(m.id, m.at)
	}
}

// Check is the check behind every request with a token: the token must be
// bound to a live session of peer's SPIFFE ID and to peer's leaf. It does not
// count as a use of the session until the Use is committed: an HTTP layer
// commits only when the request succeeds (the contract: only a 2xx moves
// last_used_at). Refusals (*Error, by code): invalid_token for anything not
// attributable to the caller's own session, session_ended for the caller's
// genuine token whose session is over, certificate_rotated for the caller's
// live session over another leaf.
//
// The session is found by the token's SHA-256; a token not found among live
// sessions is answered from its tombstone, if any (see the package doc). No
// path checks a signature, so a refusal costs about what an acceptance does
// whatever the token's story.
func (m *Manager) Check(ctx context.Context, token string, peer Peer) (Use, error) {
	return m.CheckWith(ctx, token, peer, CheckOptions{})
}

// CheckPending is Check that also accepts a session still waiting for
// approval, for the few calls such a session may make (ending itself).
func (m *Manager) CheckPending(ctx context.Context, token string, peer Peer) (Use, error) {
	return m.CheckWith(ctx, token, peer, CheckOptions{AllowPending: true})
}

// CheckOptions are what CheckWith does beyond Check.
type CheckOptions struct {
	// AllowPending accepts a session still waiting for approval
	// (CheckPending).
	AllowPending bool
	// Memo, if not nil, is the TokenMemo of the caller's connection: a
	// token it remembers is not hashed again, and an accepted token is
	// remembered.
	Memo *TokenMemo
}

// CheckWith is Check with options.
func (m *Manager) CheckWith(ctx context.Context, token string, peer Peer, o CheckOptions) (Use, error) {
	now := m.now().UnixNano() // one clock read for the checks and the use
	r, e, h, err := m.lookup(ctx, token, o.Memo, peer, now)
	if err != nil {
		return Use{}, err
	}
	b := &r.Binding
	if subtle.ConstantTimeCompare([]byte(b.Fingerprint), []byte(peer.Fingerprint)) != 1 {
		// The owner's SVID rotated: routine, not an attack. Logged at INFO,
		// not counted among the rejections; the client rebinds.
		m.event(ctx, slog.LevelInfo, "session.certificate_rotated", peer,
			slog.String("session_id", r.ID), slog.String("bound_fingerprint", b.Fingerprint))
		return Use{}, &Error{Code: api.CodeCertificateRotated, Reason: ReasonFingerprint}
	}
	if !o.AllowPending && r.Pending() {
		return Use{}, m.rejected(ctx, peer, r.ID, api.CodeApprovalPending, ReasonPending)
	}
	o.Memo.remember(token, h, e, m.mem)
	return Use{Info: m.infoAt(&r, max(r.LastUsed, now)), s: m.store, e: e, at: now}, nil
}

// Validate is Check followed at once by Commit: every accepted token counts
// as a use. It is for embedders that have no response status to wait for;
// an HTTP middleware should Check, then Commit only on success.
func (m *Manager) Validate(ctx context.Context, token string, peer Peer) (Info, error) {
	u, err := m.Check(ctx, token, peer)
	if err != nil {
		return Info{}, err
	}
	u.Commit()
	return u.Info, nil
}

// lookup finds the live record of token for peer's identity, the entry it
// was read from (with the in-process store; else nil) and the token's hash
// (from memo if it remembers the token), or the refusal. It does not check
// the fingerprint. now is the time of the check, in Unix nanoseconds. A
// store that cannot prove its view current refuses first (unavailable): no
// answer comes from a view that may miss a revocation.
func (m *Manager) lookup(ctx context.Context, token string, memo *TokenMemo, peer Peer, now int64) (Record, *entry, TokenHash, error) {
	if err := m.store.Fresh(); err != nil {
		return Record{}, nil, TokenHash{}, err
	}
	if len(token) > MaxTokenBytes {
		return Record{}, nil, TokenHash{}, m.rejected(ctx, peer, "", api.CodeInvalidToken, ReasonMalformed)
	}
	h, e := memo.hash(token, m.mem)
	var r Record
	ok := false
	if m.mem != nil {
		if e == nil {
			e = m.mem.entryByToken(h)
		}
		if e != nil {
			r, ok = e.load(), true
		}
	} else {
		r, ok = m.store.ByToken(h)
	}
	if !ok {
		return Record{}, nil, h, m.refuseNotLive(ctx, token, h, peer, now)
	}
	if r.Owner != peer.ID {
		// A stranger with a live token: probe the tombstones as for an
		// ended one (a miss), so that both refusals cost two lookups.
		m.store.Tombstone(h, now)
		return Record{}, nil, h, m.rejected(ctx, peer, r.ID, api.CodeInvalidToken, ReasonOtherIdentity)
	}
	if cause := m.endCause(&r, now); cause != "" {
		_, _ = m.end(ctx, r, cause) // the refusal stands whoever removes it
		return Record{}, nil, h, m.rejected(ctx, peer, r.ID, api.CodeSessionEnded, causeReason(cause))
	}
	return r, e, h, nil
}

// refuseNotLive answers a token that opens no live session, from its
// tombstone alone: session_ended to the owner of an ended or replaced token,
// invalid_token to anyone else and for a token without a tombstone. It
// checks no signature and allocates nothing but the error, so it costs about
// what the refusal of a live token to a stranger does.
func (m *Manager) refuseNotLive(ctx context.Context, token string, h TokenHash, peer Peer, now int64) error {
	t, ok := m.store.Tombstone(h, now)
	switch {
	case !ok:
		reason := ReasonUnknown
		switch {
		case strings.Count(token, ".") != 2 || !InJWSAlphabet(token): // not even a compact JWS
			reason = ReasonMalformed
		case m.keys.otherKey(token):
			reason = ReasonOtherKey
		}
		return m.rejected(ctx, peer, "", api.CodeInvalidToken, reason)
	case t.Owner != peer.ID:
		return m.rejected(ctx, peer, t.ID, api.CodeInvalidToken, ReasonOtherIdentity)
	default:
		return m.rejected(ctx, peer, t.ID, api.CodeSessionEnded, t.Reason)
	}
}

// Rebind moves the caller's live session to the leaf it now presents (its
// SVID rotated) and returns a new token. The session keeps its ID and
// absolute end; the old token becomes a tombstone (superseded) and the old
// leaf can never take the session back. The caller must be the session's own
// SPIFFE ID. Refused with bad_request: rebinding over the bound leaf
// (reason same_leaf), or over a leaf that is not strictly newer than it
// (reason older_leaf: its NotBefore is not after the bound leaf's, or is
// unknown while the bound leaf's is known). Ordering is not enforced for a
// session whose bound leaf's NotBefore is unknown (Peer.NotBefore zero).
// A session still waiting for approval is refused (403 approval_pending)
// and keeps its binding; once approved, it rebinds. A rebind that loses to another change of the session keeping its binding
// (an approval, a use) is tried again, up to rebindTries times in all; then
// it is 503 unavailable (reason conflict) and nothing changed.
func (m *Manager) Rebind(ctx context.Context, token string, peer Peer) (string, Info, error) {
	// A rebind that loses its compare-and-swap to a change that kept the
	// binding (an approval, a recorded use) is tried again on the record as
	// it now is; one that loses to another rebind or an end is refused.
	for try := 1; ; try++ {
		tok, info, err := m.rebind(ctx, token, peer)
		switch {
		case !errors.Is(err, errRebindAgain):
			return tok, info, err
		case try == rebindTries:
			return "", Info{}, &Error{Code: api.CodeUnavailable, Reason: ReasonConflict, Detail: "the session changed meanwhile; retry", RetryAfter: time.Second}
		}
	}
}

// rebindTries bounds the tries of one Rebind whose session keeps changing
// under it (approvals pouring in); then it answers 503 unavailable.
const rebindTries = 4

// errRebindAgain is rebind's answer when its write lost to a change that
// kept the session's binding.
var errRebindAgain = errors.New("session: rebind lost to another change; try again")

// CheckRebind answers what Rebind would answer now for token and peer, and
// changes nothing (a refusal is logged and counted as Rebind's would be): a
// server checks it before it reads a rebind request's body, since the
// token is what authorizes a rebind. Rebind checks everything again.
func (m *Manager) CheckRebind(ctx context.Context, token string, peer Peer) error {
	_, err := m.rebindable(ctx, token, peer, m.now().UnixNano())
	return err
}

// rebindable is the live record of token if peer may move it to its leaf
// now, or Rebind's refusal.
func (m *Manager) rebindable(ctx context.Context, token string, peer Peer, now int64) (Record, error) {
	r, _, _, err := m.lookup(ctx, token, nil, peer, now)
	if err != nil {
		return Record{}, err
	}
	if r.Pending() {
		// A pending token is refused (approval_pending) for everything but
		// ending itself: a rebind would also move its idle clock, keeping
		// an unapproved request alive. Once approved, it rebinds.
		return Record{}, m.rejected(ctx, peer, r.ID, api.CodeApprovalPending, ReasonPending)
	}
	b := r.Binding
	if subtle.ConstantTimeCompare([]byte(b.Fingerprint), []byte(peer.Fingerprint)) == 1 {
		return Record{}, m.rejected(ctx, peer, r.ID, api.CodeBadRequest, ReasonSameLeaf)
	}
	if !newerLeaf(b.NotBefore, peer.NotBefore) {
		return Record{}, m.rejected(ctx, peer, r.ID, api.CodeBadRequest, ReasonOlderLeaf)
	}
	return r, nil
}

func (m *Manager) rebind(ctx context.Context, token string, peer Peer) (string, Info, error) {
	now := m.now()
	r, err := m.rebindable(ctx, token, peer, now.UnixNano())
	if err != nil {
		return "", Info{}, err
	}
	b := r.Binding
	nonce, err := randomNonce()
	if err != nil {
		return "", Info{}, err
	}
	tok, err := m.keys.mint(&claims{
		Issuer: m.iss, Audience: m.iss, Subject: r.Owner.String(), ID: r.ID,
		IssuedAt: now.Unix(), Expiry: r.ExpiresAt / int64(time.Second), CNF: api.CNF{X5TS256: peer.Fingerprint},
		AuthTime: r.CreatedAt / int64(time.Second), Roles: r.Roles, RebindNonce: nonce,
	})
	if err != nil {
		return "", Info{}, err
	}
	next := r
	next.Binding = Binding{Token: hashToken(tok), Fingerprint: peer.Fingerprint, NotBefore: peer.NotBefore}
	next.LastUsed = max(r.LastUsed, now.UnixNano())
	// The old token's tombstone is written in the same step: a concurrent
	// change of the session (another rebind, an end, an approval) makes the
	// swap fail, and this rebind loses to it.
	if err := m.store.Update(ctx, r, next, m.tombstone(r, ReasonSuperseded)); err != nil {
		if !errors.Is(err, ErrConflict) {
			return "", Info{}, err
		}
		reason := ReasonSuperseded
		if cur, ok := m.store.ByID(r.ID); !ok {
			reason = ReasonEnded
		} else if cur.Binding.Token == b.Token { // an approval or a use, not a rebind
			return "", Info{}, errRebindAgain
		}
		return "", Info{}, m.rejected(ctx, peer, r.ID, api.CodeSessionEnded, reason)
	}
	m.metrics.rebound()
	m.event(ctx, slog.LevelInfo, "session.rebound", peer, slog.String("session_id", r.ID), slog.String("previous_fingerprint", b.Fingerprint))
	return tok, m.info(&next), nil
}

// tombstone is the tombstone of r's current token, ended for reason.
func (m *Manager) tombstone(r Record, reason string) *Tombstone {
	return &Tombstone{Token: r.Binding.Token, Owner: r.Owner, ID: r.ID, Reason: reason, Until: r.ExpiresAt + int64(TombstoneGrace)}
}

// newerLeaf reports whether a leaf with NotBefore next may replace the bound
// leaf with NotBefore bound: strictly newer, or anything if bound is unknown.
func newerLeaf(bound, next time.Time) bool {
	if bound.IsZero() {
		return true
	}
	return !next.IsZero() && next.After(bound)
}

// Fresh is nil while the store can answer from a current view of the
// sessions; else the *Error unavailable that every call refuses with.
func (m *Manager) Fresh() error { return m.store.Fresh() }

// Introspect reports whether token belongs to a live session bound to the
// leaf fingerprint fp. An active answer counts as a use of the session.
func (m *Manager) Introspect(ctx context.Context, token, fp string) (Info, bool) {
	if len(token) > MaxTokenBytes {
		return Info{}, false
	}
	if m.store.Fresh() != nil {
		return Info{}, false
	}
	h := hashToken(token)
	r, ok := m.store.ByToken(h)
	if !ok {
		return Info{}, false
	}
	now := m.now().UnixNano()
	if m.endCause(&r, now) != "" || r.Pending() ||
		subtle.ConstantTimeCompare([]byte(r.Binding.Fingerprint), []byte(fp)) != 1 {
		return Info{}, false
	}
	m.store.Touch(r.ID, now)
	return m.infoAt(&r, max(r.LastUsed, now)), true
}

// Get returns a live session by ID.
func (m *Manager) Get(id string) (Info, bool) {
	r, ok := m.liveByID(id)
	if !ok {
		return Info{}, false
	}
	return m.info(&r), true
}

// Logout ends the session with the given ID, as its holder asked.
func (m *Manager) Logout(ctx context.Context, id string) error {
	return m.endByID(ctx, id, CauseLogout)
}

// Revoke ends the session with the given ID; not_found if it is not live.
func (m *Manager) Revoke(ctx context.Context, id string) error {
	return m.endByID(ctx, id, CauseRevoked)
}

func (m *Manager) endByID(ctx context.Context, id, cause string) error {
	if err := m.store.Fresh(); err != nil {
		return err
	}
	r, ok := m.liveByID(id)
	if !ok {
		return reject(api.CodeNotFound, ReasonNoSuchSession)
	}
	ended, err := m.end(ctx, r, cause)
	if err != nil {
		return err
	}
	if !ended {
		return reject(api.CodeNotFound, ReasonNoSuchSession)
	}
	return nil
}

// RevokeIdentity ends every live session of id and returns how many. With
// a store that cannot write (unavailable), it returns how many it ended
// before the first failure and that error.
func (m *Manager) RevokeIdentity(ctx context.Context, id spiffeid.ID) (int, error) {
	if err := m.store.Fresh(); err != nil {
		return 0, err
	}
	var n int
	var err error
	m.store.Range(func(r Record) bool {
		if r.Owner != id {
			return true
		}
		var ended bool
		if ended, err = m.end(ctx, r, CauseRevoked); ended {
			n++
		}
		return err == nil
	})
	return n, err
}

// List returns the live sessions, oldest first, all or only those of filter.
func (m *Manager) List(filter *spiffeid.ID) ([]Info, error) {
	if err := m.store.Fresh(); err != nil {
		return nil, err
	}
	var rs []Record
	now := m.now().UnixNano()
	m.store.Range(func(r Record) bool {
		if (filter == nil || r.Owner == *filter) && m.endCause(&r, now) == "" {
			rs = append(rs, r)
		}
		return true
	})
	sortOldestFirst(rs)
	out := make([]Info, len(rs))
	for i := range rs {
		out[i] = m.info(&rs[i])
	}
	return out, nil
}

// Len is the number of sessions held, including expired ones not yet swept.
func (m *Manager) Len() int { return m.store.Len() }

// Tombstones is the number of tombstones held (see the package doc).
func (m *Manager) Tombstones() int { return m.store.Tombstones() }

// liveByID returns the session id if it is neither ended nor expired.
func (m *Manager) liveByID(id string) (Record, bool) {
	r, ok := m.store.ByID(id)
	if !ok || m.endCause(&r, m.now().UnixNano()) != "" {
		return Record{}, false
	}
	return r, true
}

// endCause is the one rule of liveness: why r is over at now (Unix
// nanoseconds), CauseExpired past its absolute end or CauseIdle unused for
// the idle timeout, or "" while it is live. It does not look at Ended.
func (m *Manager) endCause(r *Record, now int64) string {
	switch {
	case now >= r.ExpiresAt:
		return CauseExpired
	case now-r.LastUsed >= int64(m.idle):
		return CauseIdle
	}
	return ""
}

// end removes r and logs why; false if another call already ended it. The
// token it is bound to becomes a tombstone in the same store step. A record
// that changed since it was read (a rebind, an approval) is read again and
// ended as it is now.
func (m *Manager) end(ctx context.Context, r Record, cause string) (bool, error) {
	for {
		err := m.store.Delete(ctx, r, *m.tombstone(r, causeReason(cause)))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrConflict) {
			return false, err
		}
		var ok bool
		if r, ok = m.store.ByID(r.ID); !ok {
			return false, nil
		}
	}
	m.metrics.ended(cause)
	level := slog.LevelInfo
	peer := Peer{ID: r.Owner, Fingerprint: r.Binding.Fingerprint}
	if cause == CauseRevoked {
		m.event(ctx, level, "session.revoked", peer, slog.String("session_id", r.ID))
	}
	m.event(ctx, level, "session.ended", peer, slog.String("session_id", r.ID), slog.String("cause", cause))
	return true, nil
}

// causeReason is the refusal reason a tombstone gives for a session's end.
func causeReason(cause string) string {
	switch cause {
	case CauseExpired:
		return ReasonExpired
	case CauseIdle:
		return ReasonIdle
	case CauseDenied:
		return ReasonDenied
	default:
		return ReasonEnded
	}
}

// rejected logs and counts a refusal and returns it as an error. With the
// log off, the error is its only allocation.
func (m *Manager) rejected(ctx context.Context, peer Peer, sessionID string, code api.Code, reason string) error {
	m.denied(ctx, EventRejected, peer, sessionID, code, reason)
	return &Error{Code: code, Reason: reason}
}

// Denial events: every refusal, decided by the Manager or by an HTTP layer
// through Deny, is logged under one of these with the same fields.
const (
	EventRejected         = "session.rejected"  // a request with (or needing) a token
	EventLoginDenied      = "login.denied"      // a login
	EventIntrospectDenied = "introspect.denied" // an introspection
	EventApprovalRefused  = "approval.denied"   // an approval or denial by someone not allowed
)

// Deny records a refusal decided outside the Manager (an HTTP layer's: no
// token, not an admin, not an introspector): it is logged as event with the
// fields of the Manager's own refusals (code, reason, spiffe_id,
// fingerprint, and the context's attributes such as remote_addr), counted,
// and returned as an *Error to answer with.
func (m *Manager) Deny(ctx context.Context, event string, peer Peer, code api.Code, reason string) *Error {
	m.denied(ctx, event, peer, "", code, reason)
	return &Error{Code: code, Reason: reason}
}

// denied logs and counts a refusal: logins under tether_logins_denied_total,
// everything else under tether_session_rejections_total.
func (m *Manager) denied(ctx context.Context, event string, peer Peer, sessionID string, code api.Code, reason string, extra ...slog.Attr) {
	if event == EventLoginDenied {
		m.metrics.loginDenied(reason)
	} else {
		m.metrics.rejected(reason)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if !m.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{slog.String("code", string(code)), slog.String("reason", reason)}
	if sessionID != "" {
		attrs = append(attrs, slog.String("session_id", sessionID))
	}
	m.event(ctx, slog.LevelWarn, event, peer, append(attrs, extra...)...)
}

func (m *Manager) info(r *Record) Info { return m.infoAt(r, r.LastUsed) }

// infoAt is the view of r last used at last (Unix nanoseconds).
func (m *Manager) infoAt(r *Record, last int64) Info {
	state := api.StateActive
	if r.Pending() {
		state = api.StatePending
	}
	return Info{
		ID:              r.ID,
		SPIFFEID:        r.Owner,
		Fingerprint:     r.Binding.Fingerprint,
		CreatedAt:       time.Unix(0, r.CreatedAt).UTC(),
		LastUsedAt:      time.Unix(0, last).UTC(),
		ExpiresAt:       time.Unix(0, r.ExpiresAt).UTC(),
		IdleExpiresAt:   time.Unix(0, min(last+int64(m.idle), r.ExpiresAt)).UTC(),
		Roles:           r.Roles,
		State:           state,
		Approvals:       slices.Clone(r.Approvals),
		AuthenticatedAt: time.Unix(0, r.CreatedAt).UTC(),
	}
}

// sweepLoop reclaims expired sessions and idle rate limiters.
func (m *Manager) sweepLoop(ctx context.Context, interval time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sweep(ctx)
		}
	}
}

// endLapsed ends, now rather than at the next sweep, the sessions that a cap
// refusal for reason counted although they have lapsed (expired or idle):
// id's own for the per-identity cap, any for the total. It returns how many
// it ended. It runs on a refused login only, and walks the store once (after
// a restart of every replica, etcd's counters still count the sessions that
// lapsed while none ran, until a sweep ends them).
func (m *Manager) endLapsed(ctx context.Context, id spiffeid.ID, reason string) int {
	if reason != ReasonLimitIdentity {
		return m.endLapsedOf(ctx, nil)
	}
	return m.endLapsedOf(ctx, func(r *Record) bool { return r.Owner == id })
}

// endLapsedOf ends the expired and idle sessions that of reports (all of
// them if of is nil), and returns how many it ended; a failed write is
// tried again at the next sweep.
func (m *Manager) endLapsedOf(ctx context.Context, of func(*Record) bool) int {
	var n int
	m.store.Range(func(r Record) bool {
		if of != nil && !of(&r) {
			return true
		}
		if cause := m.endCause(&r, m.now().UnixNano()); cause != "" {
			if ended, _ := m.end(ctx, r, cause); ended {
				n++
			}
		}
		return ctx.Err() == nil
	})
	return n
}

// Sweep ends every expired or idle session now, forgets the tombstones of
// tokens past their exp and the rate limiters that are full again, and
// returns how many sessions it ended. The sweeper calls it every
// SweepInterval; each record is removed under the store's locks for a moment
// only, so validations of other sessions go on meanwhile.
func (m *Manager) Sweep(ctx context.Context) int {
	n := m.endLapsedOf(ctx, nil)
	m.store.Sweep(m.now().UnixNano())
	m.logins.sweep(m.now())
	return n
}
