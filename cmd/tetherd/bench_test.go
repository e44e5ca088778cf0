package main

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
)

// BenchmarkStartupToReady starts the tetherd binary (built by TestMain,
// before the clock runs) with its identity from SVID files and free
// loopback ports, and measures the time from starting the process to the
// first 200 from /readyz: ready-ms. Each op then stops tetherd with SIGTERM,
// off the clock.
func BenchmarkStartupToReady(b *testing.B) {
	ca := testpki.NewCA(b, "example.org")
	files := ca.WriteFiles(b, b.TempDir(), "tetherd", ca.Issue(b, "spiffe://example.org/tetherd"))
	poll := &http.Client{Timeout: time.Second}

	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		addrs := testutil.FreeAddrs(b, 2)
		api, health := addrs[0], addrs[1]
		cfg := testproc.Config{Path: tetherdBinary, Args: []string{
			"--listen", api, "--health-listen", health,
			"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle,
			"--admin", "spiffe://example.org/admin/*", "--log-level", "error",
		}}
		b.StartTimer()

		start := time.Now()
		p := testproc.StartT(b, cfg)
		// Poll /readyz every millisecond (what is measured is a few ms, so
		// testproc's 10ms would swamp it), up to a deadline.
		tick := time.NewTicker(time.Millisecond)
		for !ready(poll, "http://"+health+"/readyz") {
			if time.Since(start) > 10*time.Second {
				tick.Stop()
				b.Fatal("tetherd not ready after 10s")
			}
			<-tick.C
		}
		tick.Stop()
		total += time.Since(start)
		n++

		b.StopTimer()
		if err := p.Signal(syscall.SIGTERM); err != nil {
			b.Fatal(err)
		}
		if code := p.Exit(b, 10*time.Second); code != 0 {
			b.Fatalf("tetherd exited %d after SIGTERM", code)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/float64(n)/float64(time.Millisecond), "ready-ms")
}

func ready(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
