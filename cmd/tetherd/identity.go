package main

import (
	"crypto/x509"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/svid"
)

// identityLog logs what happens to tetherd's own SVID once it serves:
//
//   - identity.rotated (info): the Workload API gave a new SVID (file
//     identities log identity.reloaded instead);
//   - identity.pin_missing (error), once when the identity source stops
//     offering the pinned SPIFFE ID, and identity.pin_restored (info) when it
//     offers it again: /readyz is 503 in between;
//   - identity.expired (error), once per SVID, when the served SVID's
//     NotAfter passes with no new one (the agent stopped renewing it).
type identityLog struct {
	log  *slog.Logger
	wake chan struct{} // the served SVID may have changed

	mu      sync.Mutex
	leaf    *x509.Certificate // the served leaf last seen
	missing bool
}

func newIdentityLog(log *slog.Logger) *identityLog {
	return &identityLog{log: log, wake: make(chan struct{}, 1)}
}

// update takes what the identity source serves after a change: served
// (nil if none) and the pin's state. rotation says whether a new leaf is
// logged here (identity.rotated).
func (l *identityLog) update(served *x509svid.SVID, pin svid.PinState, rotation bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pin.Missing != l.missing {
		l.missing = pin.Missing
		if pin.Missing {
			attrs := []any{slog.String("spiffe_id", pin.ID.String()), slog.Any("offered", idStrings(pin.Offered))}
			if served != nil {
				leaf := served.Certificates[0]
				attrs = append(attrs, slog.String("serving", svid.Fingerprint(leaf)), slog.Time("serving_until", leaf.NotAfter))
			}
			attrs = append(attrs, slog.String("fix", "not ready: the identity source no longer offers an SVID with the pinned SPIFFE ID; check its registration entry (or the SVID files), or --spiffe-id"))
			l.log.Error("identity.pin_missing", attrs...)
		} else {
			l.log.Info("identity.pin_restored", slog.String("spiffe_id", pin.ID.String()))
		}
	}
	if served == nil || len(served.Certificates) == 0 {
		return
	}
	leaf := served.Certificates[0]
	if l.leaf != nil && l.leaf.Equal(leaf) {
		return
	}
	if rotation && l.leaf != nil {
		l.log.Info("identity.rotated", slog.String("spiffe_id", served.ID.String()),
			slog.String("fingerprint", svid.Fingerprint(leaf)),
			slog.String("previous_fingerprint", svid.Fingerprint(l.leaf)),
			slog.Time("not_after", leaf.NotAfter))
	}
	l.leaf = leaf
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// watchExpiry logs identity.expired when the SVID src serves expires, once
// per SVID, until stop is called (which waits for it).
func (l *identityLog) watchExpiry(src x509svid.Source) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var logged *x509.Certificate
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			t.Stop()
			var timer <-chan time.Time
			if s, err := src.GetX509SVID(); err == nil && s != nil && len(s.Certificates) > 0 {
				leaf := s.Certificates[0]
				switch d := time.Until(leaf.NotAfter); {
				case d > 0:
					t.Reset(d)
					timer = t.C
				case logged == nil || !logged.Equal(leaf):
					logged = leaf
					l.log.Error("identity.expired", slog.String("spiffe_id", s.ID.String()),
						slog.String("fingerprint", svid.Fingerprint(leaf)), slog.Time("not_after", leaf.NotAfter),
						slog.String("fix", "not ready, and clients refuse the expired certificate: the identity source did not renew tetherd's SVID (is the SPIRE agent up? is spiffe-helper writing the files?)"))
				}
			}
			select {
			case <-done:
				return
			case <-l.wake:
			case <-timer:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-exited
		})
	}
}

func idStrings(ids []spiffeid.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
