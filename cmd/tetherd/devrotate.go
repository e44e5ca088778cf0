package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/tetherproject/tether/svid"
)

// rotate re-issues the client SVIDs every half of their lifetime, as SPIRE
// rotates SVIDs at half-life, until stop is called; stop waits for a
// re-issue in progress and is safe to call twice.
//
// Each file is replaced atomically, the certificate and then its key: a CLI
// that reads them between the two renames finds a key that does not match
// and fails that one command (a window of microseconds every half-life).
func (d *devMode) rotate() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(d.ttl / 2)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				d.reissue()
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// reissue issues and writes a new SVID for each client, logging
// dev.svid_rotated with the new leaf's fingerprint, or
// dev.svid_rotation_failed (the files may then hold the last SVID).
func (d *devMode) reissue() {
	for _, c := range devClients {
		s, err := d.issue(c.name, c.id)
		if err != nil {
			d.log.Error("dev.svid_rotation_failed", slog.String("spiffe_id", c.id), slog.String("error", err.Error()))
			continue
		}
		leaf := s.Certificates[0]
		d.log.Info("dev.svid_rotated", slog.String("spiffe_id", c.id),
			slog.String("fingerprint", svid.Fingerprint(leaf)),
			slog.Time("not_after", leaf.NotAfter),
			slog.String("cert", d.path(c.name+".pem")))
	}
}
