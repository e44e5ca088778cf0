// Package logthrottle bounds the log lines an attacker can cause. It wraps
// an slog.Handler and rate-limits the records whose message is one of a set
// of refusal events (by default session.rejected, login.denied,
// introspect.denied, connection.refused and request.refused); every other
// record goes straight to the wrapped handler after one map lookup.
//
// Throttling only drops log lines: metrics count refusals where they are
// decided and are not touched. Nothing is lost silently either: every
// dropped record is counted in exactly one "log.suppressed" summary.
//
// # Keys
//
// A throttled record is keyed by (message, reason attr, spiffe_id attr).
// The attrs are looked up among the record's own attrs and those added with
// WithAttrs (the record's win), by key name, whatever group is open; a
// slog.Group value is not searched. Each key component is cut to
// [MaxKeyBytes] bytes. remote_addr, session_id and every other attr are
// not part of the key: a client chooses them freely.
//
// # Bounds (defaults in brackets)
//
//   - Per key: [Config.Burst] (5) records per [Config.Window] (10s); the
//     window opens with the key's first record. Further records of the key
//     in the window are dropped and counted. When the window ends (a timer
//     fires, so the count is reported even if the flood stops) one summary
//     is written at WARN:
//     msg=log.suppressed event=<message> reason=<reason>
//     spiffe_id=<spiffe_id> suppressed=<N> window=10s.
//     A window without drops writes no summary and arms no timer.
//   - Key table: at most [Config.MaxKeys] (4096) keys. When it is full, keys
//     whose window has ended without drops are swept (at most once per
//     Window), and if it is still full a new key's records share one
//     overflow key, summarised with event="*" reason="*" spiffe_id="*"
//     scope=overflow. Memory therefore does not grow with attacker-chosen
//     keys: at most MaxKeys+1 entries and MaxKeys+2 pending timers.
//   - All keys together: at most [Config.GlobalBurst] (100) throttled lines
//     (records and per-key summaries) per [Config.GlobalWindow] (10s).
//     What that cap drops is counted in one global summary at the end of the
//     global window, with event="*" reason="*" spiffe_id="*" scope=global.
//     So throttled messages cost at most GlobalBurst+1 lines per GlobalWindow,
//     however many keys there are.
//
// Summaries are written to the handler given to [New] (not to one derived
// with WithAttrs or WithGroup), and are never themselves throttled beyond
// the global cap above.
//
// # Goroutines
//
// There is no background goroutine: a window's summary is written by a
// time.AfterFunc timer armed at the window's first drop, one per key per
// window at most, which ends by itself. [Handler.Flush] writes the pending
// summaries at once and stops their timers, for a clean shutdown.
//
// A Handler, and every handler derived from it with WithAttrs or WithGroup
// (they share one throttle state), is safe for concurrent use.
package logthrottle

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Defaults of [Config].
const (
	DefaultBurst        = 5
	DefaultWindow       = 10 * time.Second
	DefaultMaxKeys      = 4096
	DefaultGlobalBurst  = 100
	DefaultGlobalWindow = 10 * time.Second
)

// MaxKeyBytes is the most bytes of the reason or spiffe_id attr a key keeps;
// longer values share the key of their prefix.
const MaxKeyBytes = 256

// SummaryMessage is the message of the summary records.
const SummaryMessage = "log.suppressed"

// DefaultMessages returns the messages throttled by default: tether's
// refusal events.
func DefaultMessages() []string {
	return []string{"session.rejected", "login.denied", "introspect.denied", "connection.refused", "request.refused"}
}

// Config sets the bounds. The zero value, or a zero or negative field,
// means the default.
type Config struct {
	// Messages are the record messages throttled; default DefaultMessages().
	Messages []string
	// Burst records per key are written per Window; default 5 per 10s.
	Burst  int
	Window time.Duration
	// MaxKeys bounds the key table; default 4096.
	MaxKeys int
	// GlobalBurst throttled lines are written per GlobalWindow across all
	// keys; default 100 per 10s.
	GlobalBurst  int
	GlobalWindow time.Duration

	// Now is the clock; default time.Now. For tests.
	Now func() time.Time
	// AfterFunc arms the timer that ends a window with drops: it must call
	// f once, later, on another goroutine or from the test (never before
	// returning), unless stop is called first and returns true. Default
	// time.AfterFunc. Tests replace it to end windows deterministically.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// Handler is the throttling slog.Handler.
type Handler struct {
	s     *state
	inner slog.Handler
	// reason and spiffe_id added with WithAttrs, if any.
	reason, spiffeID string
}

// New returns inner throttled as cfg says.
func New(inner slog.Handler, cfg Config) *Handler {
	s := &state{
		root:         inner,
		messages:     map[string]struct{}{},
		burst:        positive(cfg.Burst, DefaultBurst),
		window:       positiveDur(cfg.Window, DefaultWindow),
		maxKeys:      positive(cfg.MaxKeys, DefaultMaxKeys),
		globalBurst:  positive(cfg.GlobalBurst, DefaultGlobalBurst),
		globalWindow: positiveDur(cfg.GlobalWindow, DefaultGlobalWindow),
		now:          cfg.Now,
		after:        cfg.AfterFunc,
		keys:         map[key]*entry{},
	}
	msgs := cfg.Messages
	if len(msgs) == 0 {
		msgs = DefaultMessages()
	}
	for _, m := range msgs {
		s.messages[m] = struct{}{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.after == nil {
		s.after = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	s.overflow = &entry{key: key{msg: "*", reason: "*", spiffeID: "*"}, overflow: true}
	return &Handler{s: s, inner: inner}
}

func positive(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func positiveDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Enabled reports whether the wrapped handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle writes r unless it is a throttled message over its bounds, in which
// case it is counted for a summary. Summaries of windows that ended are
// written first.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if _, ok := h.s.messages[r.Message]; !ok {
		return h.inner.Handle(ctx, r)
	}
	k := key{msg: r.Message, reason: h.reason, spiffeID: h.spiffeID}
	r.Attrs(func(a slog.Attr) bool {
		k.set(a)
		return true
	})
	pass, out := h.s.admit(k)
	err := h.s.emit(ctx, out)
	if pass {
		err = errors.Join(err, h.inner.Handle(ctx, r))
	}
	return err
}

// WithAttrs returns a handler adding attrs, sharing h's throttle state; a
// reason or spiffe_id among attrs is part of the key of its records.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	k := key{reason: h.reason, spiffeID: h.spiffeID}
	for _, a := range attrs {
		k.set(a)
	}
	return &Handler{s: h.s, inner: h.inner.WithAttrs(attrs), reason: k.reason, spiffeID: k.spiffeID}
}

// WithGroup returns a handler opening group name, sharing h's throttle
// state.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{s: h.s, inner: h.inner.WithGroup(name), reason: h.reason, spiffeID: h.spiffeID}
}

// Flush writes the summaries of every window with drops now, ends those
// windows and stops their timers. Call it at shutdown so the last counts
// are not lost; the Handler stays usable.
func (h *Handler) Flush(ctx context.Context) error {
	s := h.s
	s.mu.Lock()
	now := s.now()
	var out []summary
	for _, e := range s.keys {
		if e.dropped > 0 {
			out = append(out, s.retireLocked(e, now)...)
		}
	}
	if s.overflow.dropped > 0 {
		out = append(out, s.endKeyLocked(s.overflow, now)...)
	}
	out = append(out, s.endGlobalLocked()...)
	s.mu.Unlock()
	return s.emit(ctx, out)
}

// key identifies a throttled stream of records.
type key struct{ msg, reason, spiffeID string }

func (k *key) set(a slog.Attr) {
	switch a.Key {
	case "reason":
		k.reason = clip(a.Value.Resolve().String())
	case "spiffe_id":
		k.spiffeID = clip(a.Value.Resolve().String())
	}
}

func clip(s string) string {
	if len(s) > MaxKeyBytes {
		return s[:MaxKeyBytes]
	}
	return s
}

// entry is a key's current window.
type entry struct {
	key      key
	overflow bool
	start    time.Time // zero: no window open
	n        int       // records admitted by the key's burst in this window
	dropped  int       // records dropped by the key's burst in this window
	stop     func() bool
	gen      uint64 // bumped when a window ends, so a stale timer does nothing
}

// summary is one log.suppressed record to write.
type summary struct {
	k      key
	scope  string // "" (a key), "overflow" or "global"
	n      int
	window time.Duration
}

// state is the throttle state shared by a Handler and those derived from it.
type state struct {
	root         slog.Handler // summaries go here
	messages     map[string]struct{}
	burst        int
	window       time.Duration
	maxKeys      int
	globalBurst  int
	globalWindow time.Duration
	now          func() time.Time
	after        func(time.Duration, func()) func() bool

	mu        sync.Mutex
	keys      map[key]*entry
	overflow  *entry
	lastSweep time.Time
	// The global window.
	gStart       time.Time // zero: no window open
	gN, gDropped int
	gStop        func() bool
	gGen         uint64
}

// admit decides whether a record of k is written, and returns the summaries
// of windows that ended on the way.
func (s *state) admit(k key) (bool, []summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e := s.lookupLocked(k, now)
	var out []summary
	if !e.start.IsZero() && !now.Before(e.start.Add(s.window)) {
		out = s.endKeyLocked(e, now) // its timer has not run yet
	}
	if e.start.IsZero() {
		e.start = now
	}
	if e.n >= s.burst {
		e.dropped++
		if e.stop == nil {
			gen := e.gen
			e.stop = s.after(e.start.Add(s.window).Sub(now), func() { s.fireKey(e, gen) })
		}
		return false, out
	}
	e.n++
	out = append(out, s.rollGlobalLocked(now)...)
	if s.gN >= s.globalBurst {
		s.gDropped++
		s.armGlobalLocked(now)
		return false, out
	}
	s.gN++
	return true, out
}

// lookupLocked returns k's entry, making one if the table has room, else
// the overflow entry.
func (s *state) lookupLocked(k key, now time.Time) *entry {
	if e, ok := s.keys[k]; ok {
		return e
	}
	if len(s.keys) >= s.maxKeys && (s.lastSweep.IsZero() || !now.Before(s.lastSweep.Add(s.window))) {
		s.lastSweep = now
		for kk, e := range s.keys {
			if e.dropped == 0 && !now.Before(e.start.Add(s.window)) {
				delete(s.keys, kk)
			}
		}
	}
	if len(s.keys) >= s.maxKeys {
		return s.overflow
	}
	e := &entry{key: k}
	s.keys[k] = e
	return e
}

// endKeyLocked ends e's window: it stops its timer and returns its summary
// (if it had drops), or folds the count into the global summary when the
// global cap is spent.
func (s *state) endKeyLocked(e *entry, now time.Time) []summary {
	var out []summary
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	if e.dropped > 0 {
		out = s.rollGlobalLocked(now)
		if s.gN < s.globalBurst {
			s.gN++
			sm := summary{k: e.key, n: e.dropped, window: s.window}
			if e.overflow {
				sm.scope = "overflow"
			}
			out = append(out, sm)
		} else {
			s.gDropped += e.dropped
			s.armGlobalLocked(now)
		}
	}
	e.start, e.n, e.dropped = time.Time{}, 0, 0
	e.gen++
	return out
}

// retireLocked ends e's window and drops e from the table (a new record of
// its key starts afresh).
func (s *state) retireLocked(e *entry, now time.Time) []summary {
	out := s.endKeyLocked(e, now)
	if !e.overflow && s.keys[e.key] == e {
		delete(s.keys, e.key)
	}
	return out
}

// fireKey is e's timer: the end of the window gen.
func (s *state) fireKey(e *entry, gen uint64) {
	s.mu.Lock()
	if e.gen != gen {
		s.mu.Unlock()
		return
	}
	e.stop = nil // it has run
	out := s.retireLocked(e, s.now())
	s.mu.Unlock()
	_ = s.emit(context.Background(), out) // no caller to hand an error to
}

// rollGlobalLocked opens a new global window if the current one is over,
// returning the old one's summary if it had drops.
func (s *state) rollGlobalLocked(now time.Time) []summary {
	if !s.gStart.IsZero() && now.Before(s.gStart.Add(s.globalWindow)) {
		return nil
	}
	out := s.endGlobalLocked()
	s.gStart = now
	return out
}

// endGlobalLocked ends the global window.
func (s *state) endGlobalLocked() []summary {
	var out []summary
	if s.gStop != nil {
		s.gStop()
		s.gStop = nil
	}
	if s.gDropped > 0 {
		out = append(out, summary{k: key{msg: "*", reason: "*", spiffeID: "*"}, scope: "global", n: s.gDropped, window: s.globalWindow})
	}
	s.gStart, s.gN, s.gDropped = time.Time{}, 0, 0
	s.gGen++
	return out
}

func (s *state) armGlobalLocked(now time.Time) {
	if s.gStop != nil {
		return
	}
	gen := s.gGen
	s.gStop = s.after(s.gStart.Add(s.globalWindow).Sub(now), func() { s.fireGlobal(gen) })
}

func (s *state) fireGlobal(gen uint64) {
	s.mu.Lock()
	if s.gGen != gen {
		s.mu.Unlock()
		return
	}
	s.gStop = nil
	out := s.endGlobalLocked()
	s.mu.Unlock()
	_ = s.emit(context.Background(), out)
}

// emit writes summaries to the root handler.
func (s *state) emit(ctx context.Context, out []summary) error {
	if len(out) == 0 || !s.root.Enabled(ctx, slog.LevelWarn) {
		return nil
	}
	var errs []error
	now := s.now()
	for _, sm := range out {
		r := slog.NewRecord(now, slog.LevelWarn, SummaryMessage, 0)
		r.AddAttrs(
			slog.String("event", sm.k.msg),
			slog.String("reason", sm.k.reason),
			slog.String("spiffe_id", sm.k.spiffeID),
			slog.Int("suppressed", sm.n),
			slog.String("window", sm.window.String()),
		)
		if sm.scope != "" {
			r.AddAttrs(slog.String("scope", sm.scope))
		}
		errs = append(errs, s.root.Handle(ctx, r))
	}
	return errors.Join(errs...)
}
