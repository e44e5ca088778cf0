package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
)

// Causes of a session's end, as logged and counted.
const (
	CauseExpired = "expired"
	CauseIdle    = "idle"
	CauseLogout  = "logout"
	CauseRevoked = "revoked"
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
	// LoginRate and LoginBurst limit logins per SPIFFE ID; rate.Inf turns
	// the limit off.
	LoginRate  rate.Limit
	LoginBurst int
	// Store keeps the sessions; default a new MemoryStore.
	Store Store
	// Logger receives the security events; default silent.
	Logger *slog.Logger
	// Metrics, if set, counts events.
	Metrics *Metrics
	// SweepInterval is how often expired sessions are reclaimed.
	SweepInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Peer is the authenticated caller: its SPIFFE ID and the x5t#S256
// fingerprint of the leaf certificate it connected with.
type Peer struct {
	ID          spiffeid.ID
	Fingerprint string
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
	keys    *tokenKeys
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	loginRate  rate.Limit
	loginBurst int
	limMu      sync.Mutex
	limiters   map[spiffeid.ID]*rate.Limiter

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewManager makes a Manager with a fresh signing key and starts its sweeper.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Issuer.IsZero() {
		return nil, fmt.Errorf("session: an issuer SPIFFE ID is required")
	}
	if cfg.TTL < 0 || cfg.IdleTimeout < 0 || cfg.MaxSessions < 0 || cfg.MaxSessionsPerIdentity < 0 || cfg.LoginRate < 0 || cfg.LoginBurst < 0 {
		return nil, fmt.Errorf("session: negative limit in config")
	}
	keys, err := newTokenKeys()
	if err != nil {
		return nil, err
	}
	m := &Manager{
		issuer:     cfg.Issuer,
		iss:        cfg.Issuer.String(),
		ttl:        orDefault(cfg.TTL, DefaultTTL),
		idle:       orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		limits:     Limits{Total: orDefault(cfg.MaxSessions, DefaultMaxSessions), PerIdentity: orDefault(cfg.MaxSessionsPerIdentity, DefaultMaxSessionsPerIdentity)},
		store:      cfg.Store,
		keys:       keys,
		log:        cfg.Logger,
		metrics:    cfg.Metrics,
		now:        cfg.Now,
		loginRate:  orDefault(cfg.LoginRate, DefaultLoginRate),
		loginBurst: orDefault(cfg.LoginBurst, DefaultLoginBurst),
		limiters:   make(map[spiffeid.ID]*rate.Limiter),
	}
	if m.store == nil {
		m.store = NewMemoryStore()
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	interval := orDefault(cfg.SweepInterval, DefaultSweepInterval)
	m.wg.Add(1)
	go m.sweepLoop(ctx, interval)
	return m, nil
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
// decided that peer may log in. Refusals: ErrRateLimited, ErrSessionLimit.
func (m *Manager) Login(ctx context.Context, peer Peer) (string, Info, error) {
	if err := m.allowLogin(peer.ID); err != nil {
		m.event(ctx, slog.LevelWarn, "login.denied", peer, slog.String("reason", err.Reason))
		m.metrics.loginDenied(err.Reason)
		return "", Info{}, err
	}
	id, err := randomID()
	if err != nil {
		return "", Info{}, err
	}
	now := m.now()
	exp := now.Add(m.ttl).Truncate(time.Second) // exp is whole seconds in the token
	tok, err := m.keys.mint(&claims{
		Issuer: m.iss, Audience: m.iss, Subject: peer.ID.String(), ID: id,
		IssuedAt: now.Unix(), Expiry: exp.Unix(), CNF: api.CNF{X5TS256: peer.Fingerprint},
	})
	if err != nil {
		return "", Info{}, err
	}
	r := NewRecord(id, peer.ID, now.UnixNano(), exp.UnixNano(), &Binding{Token: hashToken(tok), Fingerprint: peer.Fingerprint})
	if err := m.store.Insert(r, m.limits); err != nil {
		reason := ReasonLimitTotal
		var se *Error
		if errors.As(err, &se) {
			reason = se.Reason
		}
		m.event(ctx, slog.LevelWarn, "login.denied", peer, slog.String("reason", reason))
		m.metrics.loginDenied(reason)
		return "", Info{}, err
	}
	m.metrics.created()
	info := m.info(r)
	m.event(ctx, slog.LevelInfo, "session.created", peer, slog.String("session_id", id), slog.Time("expires_at", info.ExpiresAt))
	return tok, info, nil
}

func (m *Manager) allowLogin(id spiffeid.ID) *Error {
	if m.loginRate == rate.Inf {
		return nil
	}
	m.limMu.Lock()
	lim := m.limiters[id]
	if lim == nil {
		lim = rate.NewLimiter(m.loginRate, m.loginBurst)
		m.limiters[id] = lim
	}
	m.limMu.Unlock()
	r := lim.ReserveN(m.now(), 1)
	if !r.OK() {
		return &Error{Code: api.CodeRateLimited, Reason: ReasonRate, RetryAfter: time.Second}
	}
	if d := r.DelayFrom(m.now()); d > 0 {
		r.CancelAt(m.now())
		return &Error{Code: api.CodeRateLimited, Reason: ReasonRate, RetryAfter: d}
	}
	return nil
}

// Validate is the check behind every request with a token: the token must be
// bound to a live session of peer's SPIFFE ID and to peer's leaf. On success
// the session's idle clock restarts. Refusals (errors.Is): ErrInvalidToken
// for anything not attributable to the caller's own session, ErrSessionEnded
// for the caller's genuine token whose session is over, ErrCertificateRotated
// for the caller's live session over another leaf.
//
// The hot path hashes the token and finds the session by that hash, so a
// token that is found was minted here; only tokens that are not found are
// parsed and their signature checked, to pick the right refusal.
func (m *Manager) Validate(ctx context.Context, token string, peer Peer) (Info, error) {
	now := m.now().UnixNano() // one clock read for the checks and the touch
	r, b, err := m.lookup(ctx, token, peer, now)
	if err != nil {
		return Info{}, err
	}
	if subtle.ConstantTimeCompare([]byte(b.Fingerprint), []byte(peer.Fingerprint)) != 1 {
		return Info{}, m.rejected(ctx, peer, r.ID, ErrCertificateRotated.Code, ReasonFingerprint)
	}
	r.Touch(now)
	if r.Ended() { // revoked while we looked: a revocation that returned wins
		return Info{}, m.rejected(ctx, peer, r.ID, ErrSessionEnded.Code, ReasonEnded)
	}
	return m.info(r), nil
}

// lookup finds the live record of token for peer's identity, or the refusal.
// It does not check the fingerprint. now is the time of the check, in Unix
// nanoseconds.
func (m *Manager) lookup(ctx context.Context, token string, peer Peer, now int64) (*Record, *Binding, error) {
	if len(token) > MaxTokenBytes {
		return nil, nil, m.rejected(ctx, peer, "", api.CodeInvalidToken, ReasonMalformed)
	}
	h := hashToken(token)
	r := m.store.ByToken(h)
	if r == nil {
		return nil, nil, m.classifyUnknown(ctx, token, peer)
	}
	b := r.Binding()
	if b.Token != h { // rebound between the two loads
		return nil, nil, m.classifyUnknown(ctx, token, peer)
	}
	if r.Owner != peer.ID {
		return nil, nil, m.rejected(ctx, peer, r.ID, api.CodeInvalidToken, ReasonOtherIdentity)
	}
	if now >= r.ExpiresAt {
		m.end(ctx, r, CauseExpired)
		return nil, nil, m.rejected(ctx, peer, r.ID, api.CodeSessionEnded, ReasonExpired)
	}
	if now-r.LastUsed() >= int64(m.idle) {
		m.end(ctx, r, CauseIdle)
		return nil, nil, m.rejected(ctx, peer, r.ID, api.CodeSessionEnded, ReasonIdle)
	}
	return r, b, nil
}

// classifyUnknown tells a genuine token of the caller whose session is no
// longer live (session_ended) from everything else (invalid_token).
func (m *Manager) classifyUnknown(ctx context.Context, token string, peer Peer) error {
	c, err := m.keys.verify(token, m.iss)
	if err != nil {
		var se *Error
		if !errors.As(err, &se) { // verify returns only *Error; never panic if that changes
			se = &Error{Code: api.CodeInvalidToken, Reason: ReasonMalformed}
		}
		return m.rejected(ctx, peer, "", se.Code, se.Reason)
	}
	if c.Subject != peer.ID.String() {
		return m.rejected(ctx, peer, c.ID, api.CodeInvalidToken, ReasonOtherIdentity)
	}
	reason := ReasonEnded
	if r := m.store.ByID(c.ID); r != nil {
		reason = ReasonSuperseded
	}
	return m.rejected(ctx, peer, c.ID, api.CodeSessionEnded, reason)
}

// Rebind moves the caller's live session to the leaf it now presents (its
// SVID rotated) and returns a new token. The session keeps its ID and
// absolute end; the old token stops working. The caller must be the
// session's own SPIFFE ID; rebinding over the already bound leaf is refused
// (ErrBadRequest).
func (m *Manager) Rebind(ctx context.Context, token string, peer Peer) (string, Info, error) {
	now := m.now()
	r, b, err := m.lookup(ctx, token, peer, now.UnixNano())
	if err != nil {
		return "", Info{}, err
	}
	if subtle.ConstantTimeCompare([]byte(b.Fingerprint), []byte(peer.Fingerprint)) == 1 {
		return "", Info{}, m.rejected(ctx, peer, r.ID, api.CodeBadRequest, ReasonSameLeaf)
	}
	tok, err := m.keys.mint(&claims{
		Issuer: m.iss, Audience: m.iss, Subject: r.Owner.String(), ID: r.ID,
		IssuedAt: now.Unix(), Expiry: r.ExpiresAt / int64(time.Second), CNF: api.CNF{X5TS256: peer.Fingerprint},
	})
	if err != nil {
		return "", Info{}, err
	}
	next := &Binding{Token: hashToken(tok), Fingerprint: peer.Fingerprint}
	if !m.store.Rebind(r, b, next) {
		return "", Info{}, m.rejected(ctx, peer, r.ID, api.CodeSessionEnded, ReasonSuperseded)
	}
	r.Touch(now.UnixNano())
	m.metrics.rebound()
	m.event(ctx, slog.LevelInfo, "session.rebound", peer, slog.String("session_id", r.ID), slog.String("previous_fingerprint", b.Fingerprint))
	return tok, m.info(r), nil
}

// Introspect reports whether token belongs to a live session bound to the
// leaf fingerprint fp. An active answer counts as a use of the session.
func (m *Manager) Introspect(ctx context.Context, token, fp string) (Info, bool) {
	if len(token) > MaxTokenBytes {
		return Info{}, false
	}
	h := hashToken(token)
	r := m.store.ByToken(h)
	if r == nil {
		return Info{}, false
	}
	b := r.Binding()
	now := m.now().UnixNano()
	if b.Token != h || now >= r.ExpiresAt || now-r.LastUsed() >= int64(m.idle) ||
		subtle.ConstantTimeCompare([]byte(b.Fingerprint), []byte(fp)) != 1 {
		return Info{}, false
	}
	r.Touch(now)
	if r.Ended() {
		return Info{}, false
	}
	return m.info(r), true
}

// Get returns a live session by ID.
func (m *Manager) Get(id string) (Info, bool) {
	r := m.live(m.store.ByID(id))
	if r == nil {
		return Info{}, false
	}
	return m.info(r), true
}

// Logout ends the session with the given ID, as its holder asked.
func (m *Manager) Logout(ctx context.Context, id string) error {
	return m.endByID(ctx, id, CauseLogout)
}

// Revoke ends the session with the given ID; ErrNotFound if it is not live.
func (m *Manager) Revoke(ctx context.Context, id string) error {
	return m.endByID(ctx, id, CauseRevoked)
}

func (m *Manager) endByID(ctx context.Context, id, cause string) error {
	r := m.live(m.store.ByID(id))
	if r == nil || !m.end(ctx, r, cause) {
		return reject(api.CodeNotFound, ReasonNoSuchSession)
	}
	return nil
}

// RevokeIdentity ends every live session of id and returns how many.
func (m *Manager) RevokeIdentity(ctx context.Context, id spiffeid.ID) int {
	var n int
	m.store.Range(func(r *Record) bool {
		if r.Owner == id && m.end(ctx, r, CauseRevoked) {
			n++
		}
		return true
	})
	return n
}

// List returns the live sessions, oldest first, all or only those of filter.
func (m *Manager) List(filter *spiffeid.ID) []Info {
	var rs []*Record
	m.store.Range(func(r *Record) bool {
		if (filter == nil || r.Owner == *filter) && m.live(r) != nil {
			rs = append(rs, r)
		}
		return true
	})
	sortOldestFirst(rs)
	out := make([]Info, len(rs))
	for i, r := range rs {
		out[i] = m.info(r)
	}
	return out
}

// Len is the number of sessions held, including expired ones not yet swept.
func (m *Manager) Len() int { return m.store.Len() }

// live returns r if it is neither ended nor expired.
func (m *Manager) live(r *Record) *Record {
	if r == nil || r.Ended() {
		return nil
	}
	now := m.now().UnixNano()
	if now >= r.ExpiresAt || now-r.LastUsed() >= int64(m.idle) {
		return nil
	}
	return r
}

// end removes r and logs why; false if another call already ended it.
func (m *Manager) end(ctx context.Context, r *Record, cause string) bool {
	if !m.store.Delete(r) {
		return false
	}
	m.metrics.ended(cause)
	level := slog.LevelInfo
	if cause == CauseRevoked {
		m.event(ctx, level, "session.revoked", Peer{ID: r.Owner, Fingerprint: r.Binding().Fingerprint}, slog.String("session_id", r.ID))
	}
	m.event(ctx, level, "session.ended", Peer{ID: r.Owner, Fingerprint: r.Binding().Fingerprint}, slog.String("session_id", r.ID), slog.String("cause", cause))
	return true
}

// rejected logs and counts a refusal and returns it as an error.
func (m *Manager) rejected(ctx context.Context, peer Peer, sessionID string, code api.Code, reason string) error {
	m.metrics.rejected(reason)
	attrs := []slog.Attr{slog.String("code", string(code)), slog.String("reason", reason)}
	if sessionID != "" {
		attrs = append(attrs, slog.String("session_id", sessionID))
	}
	m.event(ctx, slog.LevelWarn, "session.rejected", peer, attrs...)
	return &Error{Code: code, Reason: reason}
}

func (m *Manager) info(r *Record) Info {
	last := r.LastUsed()
	return Info{
		ID:            r.ID,
		SPIFFEID:      r.Owner,
		Fingerprint:   r.Binding().Fingerprint,
		CreatedAt:     time.Unix(0, r.CreatedAt).UTC(),
		LastUsedAt:    time.Unix(0, last).UTC(),
		ExpiresAt:     time.Unix(0, r.ExpiresAt).UTC(),
		IdleExpiresAt: time.Unix(0, min(last+int64(m.idle), r.ExpiresAt)).UTC(),
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

// Sweep ends every expired or idle session now and forgets rate limiters
// that are full again. The sweeper calls it every SweepInterval; each record
// is removed under the store's locks for a moment only, so validations of
// other sessions go on meanwhile.
func (m *Manager) Sweep(ctx context.Context) int {
	var n int
	m.store.Range(func(r *Record) bool {
		now := m.now().UnixNano()
		switch {
		case now >= r.ExpiresAt:
			if m.end(ctx, r, CauseExpired) {
				n++
			}
		case now-r.LastUsed() >= int64(m.idle):
			if m.end(ctx, r, CauseIdle) {
				n++
			}
		}
		return ctx.Err() == nil
	})
	m.limMu.Lock()
	now := m.now()
	for id, lim := range m.limiters {
		if lim.TokensAt(now) >= float64(m.loginBurst) {
			delete(m.limiters, id)
		}
	}
	m.limMu.Unlock()
	return n
}
