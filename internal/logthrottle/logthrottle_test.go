package logthrottle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/testutil"
)

// timers is a manual AfterFunc: armed functions run when the test fires
// them, never on their own.
type timers struct {
	mu      sync.Mutex
	pending []*timer
}

type timer struct {
	f    func()
	d    time.Duration
	done bool // fired or stopped
}

func (ts *timers) after(d time.Duration, f func()) func() bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := &timer{f: f, d: d}
	ts.pending = append(ts.pending, t)
	return func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		was := t.done
		t.done = true
		return !was
	}
}

// armed returns the timers neither fired nor stopped.
func (ts *timers) armed() []*timer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []*timer
	for _, t := range ts.pending {
		if !t.done {
			out = append(out, t)
		}
	}
	return out
}

// fire runs every armed timer (the end of their windows) and returns how
// many ran.
func (ts *timers) fire() int {
	ts.mu.Lock()
	var run []func()
	for _, t := range ts.pending {
		if !t.done {
			t.done = true
			run = append(run, t.f)
		}
	}
	ts.pending = nil
	ts.mu.Unlock()
	for _, f := range run {
		f()
	}
	return len(run)
}

type rig struct {
	h      *Handler
	log    *slog.Logger
	buf    *testutil.Buffer
	clock  *testutil.Clock
	timers *timers
}

func newRig(cfg Config) *rig {
	r := &rig{buf: &testutil.Buffer{}, clock: testutil.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)), timers: &timers{}}
	cfg.Now, cfg.AfterFunc = r.clock.Now, r.timers.after
	r.h = New(slog.NewJSONHandler(r.buf, &slog.HandlerOptions{Level: slog.LevelDebug}), cfg)
	r.log = slog.New(r.h)
	return r
}

// events returns the logged records named msg whose attrs include match.
func (r *rig) events(t *testing.T, msg string, match ...string) []map[string]any {
	t.Helper()
	var out []map[string]any
next:
	for _, line := range strings.Split(strings.TrimSpace(r.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if ev["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(match); i += 2 {
			if fmt.Sprint(ev[match[i]]) != match[i+1] {
				continue next
			}
		}
		out = append(out, ev)
	}
	return out
}

func (r *rig) suppressedTotal(t *testing.T) int {
	t.Helper()
	n := 0
	for _, ev := range r.events(t, SummaryMessage) {
		n += int(ev["suppressed"].(float64))
	}
	return n
}

func (r *rig) keyCount() int {
	r.h.s.mu.Lock()
	defer r.h.s.mu.Unlock()
	return len(r.h.s.keys)
}

func reject(l *slog.Logger, reason, id, remote string) {
	l.Warn("session.rejected", slog.String("code", "invalid_token"), slog.String("reason", reason),
		slog.String("spiffe_id", id), slog.String("remote_addr", remote))
}

const (
	alice = "spiffe://example.org/workload/alice"
	bob   = "spiffe://example.org/workload/bob"
)

func TestBurstPassesExcessIsSummarised(t *testing.T) {
	r := newRig(Config{})
	for range DefaultBurst + 20 {
		reject(r.log, "malformed", alice, "10.0.0.1:1234")
	}
	if got := len(r.events(t, "session.rejected")); got != DefaultBurst {
		t.Fatalf("%d session.rejected lines, want the burst of %d", got, DefaultBurst)
	}
	if got := r.events(t, SummaryMessage); len(got) != 0 {
		t.Fatalf("summary before the window ended: %v", got)
	}
	armed := r.timers.armed()
	if len(armed) != 1 || armed[0].d != DefaultWindow {
		t.Fatalf("armed timers %v, want one for the rest of the window (%s)", armed, DefaultWindow)
	}

	r.clock.Add(DefaultWindow)
	if n := r.timers.fire(); n != 1 {
		t.Fatalf("%d timers fired", n)
	}
	sums := r.events(t, SummaryMessage)
	if len(sums) != 1 {
		t.Fatalf("%d summaries, want exactly 1: %v", len(sums), sums)
	}
	want := map[string]any{
		"level": "WARN", "msg": SummaryMessage, "event": "session.rejected", "reason": "malformed",
		"spiffe_id": alice, "suppressed": float64(20), "window": "10s",
	}
	for k, v := range want {
		if sums[0][k] != v {
			t.Errorf("summary %s = %v, want %v (%v)", k, sums[0][k], v, sums[0])
		}
	}
	if _, ok := sums[0]["scope"]; ok {
		t.Errorf("a key's summary has a scope: %v", sums[0])
	}

	// The next window starts afresh; without drops it arms nothing.
	for range DefaultBurst {
		reject(r.log, "malformed", alice, "10.0.0.1:1234")
	}
	if got := len(r.events(t, "session.rejected")); got != 2*DefaultBurst {
		t.Fatalf("%d lines after the window, want %d", got, 2*DefaultBurst)
	}
	if armed := r.timers.armed(); len(armed) != 0 {
		t.Fatalf("%d timers armed for a window without drops", len(armed))
	}
	if n := r.timers.fire(); n != 0 || len(r.events(t, SummaryMessage)) != 1 {
		t.Fatal("a second summary for a window without drops")
	}
}

func TestWindowEndsByClockBeforeTimer(t *testing.T) {
	r := newRig(Config{Burst: 2, Window: time.Second})
	for range 5 {
		reject(r.log, "malformed", alice, "")
	}
	r.clock.Add(time.Second)
	reject(r.log, "malformed", alice, "") // the timer has not run yet
	if got := r.events(t, SummaryMessage, "suppressed", "3"); len(got) != 1 {
		t.Fatalf("no summary of 3 when the next window opened: %s", r.buf)
	}
	if got := len(r.events(t, "session.rejected")); got != 3 {
		t.Fatalf("%d lines, want 2 + 1", got)
	}
	r.timers.fire() // the stopped timer of the old window
	if got := len(r.events(t, SummaryMessage)); got != 1 {
		t.Fatalf("%d summaries, want the old window's count once", got)
	}
}

func TestKeysAreIndependent(t *testing.T) {
	r := newRig(Config{})
	counts := map[[2]string]int{
		{"malformed", alice}: 7, {"bad_signature", alice}: 12,
		{"malformed", bob}: 3, {"bad_signature", bob}: 30,
	}
	for k, n := range counts {
		for range n {
			reject(r.log, k[0], k[1], "")
		}
	}
	r.log.Warn("login.denied", "reason", "not_admin", "spiffe_id", alice)
	r.clock.Add(DefaultWindow)
	r.timers.fire()
	for k, n := range counts {
		lines := r.events(t, "session.rejected", "reason", k[0], "spiffe_id", k[1])
		if want := min(n, DefaultBurst); len(lines) != want {
			t.Errorf("%v: %d lines, want %d", k, len(lines), want)
		}
		sums := r.events(t, SummaryMessage, "event", "session.rejected", "reason", k[0], "spiffe_id", k[1])
		switch {
		case n <= DefaultBurst && len(sums) != 0:
			t.Errorf("%v: summary without drops: %v", k, sums)
		case n > DefaultBurst && (len(sums) != 1 || sums[0]["suppressed"] != float64(n-DefaultBurst)):
			t.Errorf("%v: summaries %v, want one of %d", k, sums, n-DefaultBurst)
		}
	}
	if got := len(r.events(t, "login.denied")); got != 1 {
		t.Errorf("login.denied of the same peer: %d lines, want 1 (another message is another key)", got)
	}
}

func TestAttackerChosenAttrsDoNotSplitKeys(t *testing.T) {
	r := newRig(Config{})
	for i := range 1000 {
		r.log.Warn("session.rejected", "reason", "malformed", "spiffe_id", alice,
			"remote_addr", fmt.Sprintf("10.0.%d.%d:%d", i/256, i%256, 1024+i), "session_id", fmt.Sprintf("s%d", i),
			"fingerprint", fmt.Sprintf("fp%d", i))
	}
	if got := len(r.events(t, "session.rejected")); got != DefaultBurst {
		t.Fatalf("%d lines, want %d: remote_addr, session_id and fingerprint must not split the key", got, DefaultBurst)
	}
	if n := r.keyCount(); n != 1 {
		t.Fatalf("%d keys, want 1", n)
	}
	r.timers.fire()
	if got := r.events(t, SummaryMessage, "suppressed", "995"); len(got) != 1 {
		t.Fatalf("want one summary of 995: %s", r.events(t, SummaryMessage))
	}
}

func TestKeyTableIsBounded(t *testing.T) {
	const records = 100_000
	t.Run("overflow key", func(t *testing.T) {
		r := newRig(Config{GlobalBurst: 1 << 30}) // only the table bound at work
		maxKeys := 0
		for i := range records {
			reject(r.log, "malformed", fmt.Sprintf("spiffe://example.org/attacker/%d", i), "")
			if i%1000 == 0 {
				maxKeys = max(maxKeys, r.keyCount())
			}
		}
		maxKeys = max(maxKeys, r.keyCount())
		if maxKeys > DefaultMaxKeys {
			t.Fatalf("%d keys, above the bound of %d", maxKeys, DefaultMaxKeys)
		}
		lines := len(r.events(t, "session.rejected"))
		if want := DefaultMaxKeys + DefaultBurst; lines != want {
			t.Fatalf("%d lines, want one per tracked key and the overflow key's burst: %d", lines, want)
		}
		if n := len(r.timers.armed()); n != 1 {
			t.Fatalf("%d timers armed, want the overflow key's only", n)
		}
		r.timers.fire()
		sums := r.events(t, SummaryMessage, "scope", "overflow", "event", "*", "reason", "*", "spiffe_id", "*")
		if len(sums) != 1 || sums[0]["suppressed"] != float64(records-lines) {
			t.Fatalf("overflow summaries %v, want one of %d", sums, records-lines)
		}

		// Once the window is over, stale keys are swept and new ones tracked.
		r.clock.Add(DefaultWindow)
		reject(r.log, "malformed", "spiffe://example.org/late", "")
		if n := r.keyCount(); n != 1 {
			t.Fatalf("%d keys after the sweep, want only the new one", n)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		r := newRig(Config{})
		for i := range records {
			reject(r.log, "malformed", fmt.Sprintf("spiffe://example.org/attacker/%d", i), "")
		}
		if n := r.keyCount(); n > DefaultMaxKeys {
			t.Fatalf("%d keys, above the bound of %d", n, DefaultMaxKeys)
		}
		r.timers.fire()
		lines := len(r.events(t, "session.rejected"))
		if lines != DefaultGlobalBurst {
			t.Fatalf("%d lines, want the global cap %d", lines, DefaultGlobalBurst)
		}
		if got := r.suppressedTotal(t); lines+got != records {
			t.Fatalf("%d lines + %d suppressed, want every one of %d records accounted for", lines, got, records)
		}
		// The global window's summary, and the overflow key's, which ends
		// later and so falls in the next global window.
		if got := len(r.events(t, SummaryMessage)); got > 2 {
			t.Fatalf("%d summaries, want at most 2", got)
		}
	})
}

func TestGlobalCap(t *testing.T) {
	r := newRig(Config{})
	const peers = 30
	for i := range peers {
		for range DefaultBurst {
			reject(r.log, "malformed", fmt.Sprintf("spiffe://example.org/p%d", i), "")
		}
	}
	if got := len(r.events(t, "session.rejected")); got != DefaultGlobalBurst {
		t.Fatalf("%d lines, want the global cap %d", got, DefaultGlobalBurst)
	}
	if n := len(r.timers.armed()); n != 1 {
		t.Fatalf("%d timers, want the global window's only", n)
	}
	r.timers.fire()
	sums := r.events(t, SummaryMessage, "scope", "global", "event", "*")
	if want := float64(peers*DefaultBurst - DefaultGlobalBurst); len(sums) != 1 || sums[0]["suppressed"] != want {
		t.Fatalf("global summaries %v, want one of %v", sums, want)
	}
	// A new global window: lines flow again.
	r.clock.Add(DefaultWindow)
	reject(r.log, "malformed", alice, "")
	if got := len(r.events(t, "session.rejected", "spiffe_id", alice)); got != 1 {
		t.Fatal("no line in the next global window")
	}
}

func TestOtherMessagesPassUntouched(t *testing.T) {
	r := newRig(Config{})
	for i := range 1000 {
		r.log.Warn("session.created", "spiffe_id", alice, "reason", "x", "n", i)
	}
	r.log.Info("tetherd.started", "listen", "127.0.0.1:1")
	if got := len(r.events(t, "session.created")); got != 1000 {
		t.Fatalf("%d of 1000 lines", got)
	}
	if ev := r.events(t, "session.created", "n", "999"); len(ev) != 1 || ev[0]["spiffe_id"] != alice {
		t.Fatalf("record changed: %v", ev)
	}
	if len(r.events(t, "tetherd.started")) != 1 || r.keyCount() != 0 || len(r.timers.armed()) != 0 {
		t.Fatal("a message outside the set was tracked")
	}

	// Only a set lookup: no allocation beyond the wrapped handler's.
	h := New(slog.DiscardHandler, Config{})
	rec := slog.NewRecord(time.Now(), slog.LevelWarn, "session.created", 0)
	rec.AddAttrs(slog.String("spiffe_id", alice))
	if a := testing.AllocsPerRun(100, func() { _ = h.Handle(context.Background(), rec) }); a != 0 {
		t.Fatalf("%v allocations per pass-through record", a)
	}
}

func TestCustomMessages(t *testing.T) {
	r := newRig(Config{Messages: []string{"x.refused"}, Burst: 1})
	for range 3 {
		r.log.Warn("x.refused", "reason", "r")
		reject(r.log, "malformed", alice, "")
	}
	if len(r.events(t, "x.refused")) != 1 || len(r.events(t, "session.rejected")) != 3 {
		t.Fatalf("Messages not honoured:\n%s", r.buf)
	}
}

func TestWithAttrsAndGroupShareState(t *testing.T) {
	r := newRig(Config{})
	withID := r.log.With("spiffe_id", alice)
	grouped := withID.WithGroup("req")
	for range 3 {
		withID.Warn("session.rejected", "reason", "malformed")
		grouped.Warn("session.rejected", "reason", "malformed", "remote_addr", "10.0.0.9:1")
		r.log.Warn("session.rejected", "reason", "malformed", "spiffe_id", alice)
	}
	withID.Warn("session.rejected", "reason", "malformed", "spiffe_id", bob) // the record's attr wins
	if r.keyCount() != 2 {
		t.Fatalf("%d keys, want alice's and bob's", r.keyCount())
	}
	if got := len(r.events(t, "session.rejected", "spiffe_id", alice)); got != DefaultBurst {
		t.Fatalf("%d lines of alice across the derived loggers, want %d", got, DefaultBurst)
	}
	r.timers.fire()
	sums := r.events(t, SummaryMessage, "spiffe_id", alice, "reason", "malformed")
	if len(sums) != 1 || sums[0]["suppressed"] != float64(9-DefaultBurst) {
		t.Fatalf("summaries %v, want one of %d", sums, 9-DefaultBurst)
	}
	if _, grouped := sums[0]["req"]; grouped {
		t.Fatal("a summary was written inside a group")
	}
}

func TestFlush(t *testing.T) {
	r := newRig(Config{Burst: 1})
	for range 4 {
		reject(r.log, "malformed", alice, "")
	}
	for i := range DefaultGlobalBurst + 10 {
		reject(r.log, "malformed", fmt.Sprintf("spiffe://example.org/p%d", i), "")
	}
	if err := r.h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(r.timers.armed()); n != 0 {
		t.Fatalf("%d timers armed after Flush", n)
	}
	lines := len(r.events(t, "session.rejected"))
	if got := r.suppressedTotal(t); lines+got != 4+DefaultGlobalBurst+10 {
		t.Fatalf("%d lines + %d suppressed after Flush", lines, got)
	}
	if r.timers.fire() != 0 {
		t.Fatal("stopped timers ran")
	}
}

func TestLevelOff(t *testing.T) {
	buf := &testutil.Buffer{}
	ts := &timers{}
	h := New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelError}), Config{AfterFunc: ts.after})
	l := slog.New(h)
	for range 20 {
		reject(l, "malformed", alice, "")
	}
	ts.fire()
	if buf.String() != "" {
		t.Fatalf("wrote below the level: %s", buf)
	}
}

// TestRealTimer: with the default clock and time.AfterFunc, the summary is
// written when the window ends, with no further record.
func TestRealTimer(t *testing.T) {
	buf := &testutil.Buffer{}
	l := slog.New(New(slog.NewJSONHandler(buf, nil), Config{Window: 20 * time.Millisecond}))
	for range 12 {
		reject(l, "malformed", alice, "")
	}
	testutil.WaitFor(t, 5*time.Second, "the summary", func() bool {
		return strings.Contains(buf.String(), `"msg":"log.suppressed"`)
	})
	if !strings.Contains(buf.String(), `"suppressed":7`) || !strings.Contains(buf.String(), `"window":"20ms"`) {
		t.Fatalf("summary: %s", buf)
	}
}

// TestConcurrent logs from many goroutines through derived handlers while
// windows end and the clock moves; every record is either written or
// counted in exactly one summary. Run with -race.
func TestConcurrent(t *testing.T) {
	r := newRig(Config{Burst: 3, MaxKeys: 8, GlobalBurst: 50})
	const workers, each = 16, 2000
	var wg sync.WaitGroup
	var stop atomic.Bool
	ender := make(chan struct{})
	go func() {
		defer close(ender)
		for !stop.Load() {
			r.timers.fire()
			r.clock.Add(time.Second)
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := r.log.With("worker", w)
			if w%2 == 0 {
				l = l.WithGroup("g")
			}
			for i := range each {
				reject(l, fmt.Sprintf("r%d", i%3), fmt.Sprintf("spiffe://example.org/p%d", (w+i)%12), fmt.Sprintf("10.0.0.%d:1", i%250))
				if i%10 == 0 {
					l.Info("session.created", "i", i)
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	<-ender
	r.timers.fire()
	if err := r.h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := len(r.events(t, "session.rejected"))
	if got := r.suppressedTotal(t); lines+got != workers*each {
		t.Fatalf("%d lines + %d suppressed, want %d", lines, got, workers*each)
	}
	if got := len(r.events(t, "session.created")); got != workers*each/10 {
		t.Fatalf("%d session.created lines, want all %d", got, workers*each/10)
	}
	if n := r.keyCount(); n > 8 {
		t.Fatalf("%d keys, bound 8", n)
	}
}
