package main

// Security finding 11 (issue 9): a client must not choose tetherd's log
// volume. Refusals are still counted, every one, in the metrics; their log
// lines are bounded per reason and peer by internal/logthrottle, with a
// log.suppressed summary of what was left out.

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/logthrottle"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// windowEnds stands in for time.AfterFunc in logThrottle: the throttle's
// windows end when the test says so, not after a wall-clock guess.
type windowEnds struct {
	mu  sync.Mutex
	fns []func()
}

func (w *windowEnds) after(_ time.Duration, f func()) func() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := len(w.fns)
	w.fns = append(w.fns, f)
	return func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		stopped := w.fns[i] != nil
		w.fns[i] = nil
		return stopped
	}
}

// end runs the armed timers, ending their windows, and returns how many ran.
func (w *windowEnds) end() int {
	w.mu.Lock()
	fns := w.fns
	w.fns = make([]func(), len(fns)) // keep the indexes stop closes over
	w.mu.Unlock()
	n := 0
	for _, f := range fns {
		if f != nil {
			f()
			n++
		}
	}
	return n
}

// TestLogFloodThrottled runs `tetherd dev` in-process (as TestDevMode does,
// so the test can give the throttle a manual clock) and has its non-admin
// identity send 500 requests with a bogus bearer token: all 500 are refused
// and counted in tether_session_rejections_total, but the log holds only
// the burst of session.rejected lines and one log.suppressed summary of the
// rest.
func TestLogFloodThrottled(t *testing.T) {
	const requests = 500
	ends := &windowEnds{}
	clock := testutil.NewClock(time.Now())
	logThrottle = logthrottle.Config{Now: clock.Now, AfterFunc: ends.after}
	t.Cleanup(func() { logThrottle = logthrottle.Config{} })

	// tetherd dev in-process, with the fault tests' process handle.
	dir := filepath.Join(t.TempDir(), "dev")
	p := ftInProcess(t, "dev", "--dir", dir, "--log-format", "json")
	p.serving()

	user, err := x509svid.Load(filepath.Join(dir, "user.pem"), filepath.Join(dir, "user.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := p.apiClient(user)
	for i := range requests {
		if status, body := p.call(c, http.MethodGet, api.PathSessionsSelf, "bogus-token"); status != http.StatusUnauthorized {
			t.Fatalf("request %d: %d %s, want 401", i+1, status, body)
		}
	}

	// Every refusal is counted.
	if got := int(p.metric(`tether_session_rejections_total{reason="` + session.ReasonMalformed + `"}`)); got != requests {
		t.Fatalf("tether_session_rejections_total{reason=%q} = %d, want all %d", session.ReasonMalformed, got, requests)
	}

	// The log holds the burst, not 500 lines.
	ours := func(ev map[string]any) bool {
		return ev["reason"] == session.ReasonMalformed && ev["spiffe_id"] == devUserID
	}
	lines := 0
	for _, ev := range p.Events("session.rejected") {
		if ours(ev) {
			lines++
		}
	}
	if lines == 0 || lines > logthrottle.DefaultBurst+1 {
		t.Fatalf("%d session.rejected lines for %s, want 1 to %d", lines, devUserID, logthrottle.DefaultBurst+1)
	}

	// The window ends: one summary counts the rest.
	clock.Add(logthrottle.DefaultWindow)
	if n := ends.end(); n == 0 {
		t.Fatal("no window end was armed, though lines were dropped")
	}
	var sums []map[string]any
	testutil.WaitFor(t, 10*time.Second, "the log.suppressed summary", func() bool {
		sums = sums[:0]
		for _, ev := range p.Events(logthrottle.SummaryMessage) {
			if ours(ev) && ev["event"] == "session.rejected" {
				sums = append(sums, ev)
			}
		}
		return len(sums) > 0
	})
	if len(sums) != 1 {
		t.Fatalf("%d summaries, want 1: %v", len(sums), sums)
	}
	if got, want := sums[0]["suppressed"], float64(requests-lines); got != want {
		t.Fatalf("summary suppressed=%v, want %v (%d requests, %d lines): %v", got, want, requests, lines, sums[0])
	}
	if sums[0]["level"] != "WARN" || sums[0]["window"] != logthrottle.DefaultWindow.String() {
		t.Fatalf("summary %v", sums[0])
	}
}

// TestLoggerThrottlesBothFormats: newLogger throttles refusals in json and
// text alike, and leaves other events alone.
func TestLoggerThrottlesBothFormats(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf testutil.Buffer
			log, err := newLogger(&buf, "info", format)
			if err != nil {
				t.Fatal(err)
			}
			for range 50 {
				log.Warn("session.rejected", "reason", "malformed", "spiffe_id", devUserID, "remote_addr", "127.0.0.1:1")
				log.Info("session.created", "spiffe_id", devAdminID)
			}
			h, ok := log.Handler().(*logthrottle.Handler)
			if !ok {
				t.Fatalf("tetherd's log handler is a %T, not throttled", log.Handler())
			}
			if err := h.Flush(context.Background()); err != nil { // writes the summary, stops its timer
				t.Fatal(err)
			}
			out := buf.String()
			// The burst, plus the summary's event="session.rejected".
			if n := strings.Count(out, "session.rejected"); n != logthrottle.DefaultBurst+1 {
				t.Fatalf("%d session.rejected lines, want %d and the summary:\n%s", n, logthrottle.DefaultBurst, out)
			}
			if !strings.Contains(out, "log.suppressed") || !strings.Contains(out, "45") {
				t.Fatalf("no summary of 45:\n%s", out)
			}
			if n := strings.Count(out, "session.created"); n != 50 {
				t.Fatalf("%d session.created lines, want 50", n)
			}
			if format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					if !json.Valid([]byte(line)) {
						t.Fatalf("not JSON: %q", line)
					}
				}
			}
		})
	}
}
