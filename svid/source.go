package svid

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Source is an identity source: the current SVID and the trust bundles.
type Source interface {
	x509svid.Source
	x509bundle.Source
	Close() error
}

var (
	_ Source = (*workloadapi.X509Source)(nil)
	_ Source = (*FileSource)(nil)
	_ Source = (*StaticSource)(nil)
)

// NewWorkloadSource connects to the SPIFFE Workload API at addr
// ("unix:///path" or "tcp://ip:port") and waits up to timeout for the first
// SVID. Without a deadline go-spiffe would wait forever when no registration
// entry matches this process, so the error says what to check.
func NewWorkloadSource(ctx context.Context, addr string, timeout time.Duration) (*workloadapi.X509Source, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("svid: no X.509 SVID from the Workload API at %s within %s: is the agent running there, and does a registration entry match this process (its uid, path...)?", addr, timeout)
		}
		return nil, fmt.Errorf("svid: Workload API at %s: %w", addr, err)
	}
	return src, nil
}

// Usable reports whether src holds an SVID that is valid at now; the error
// says why not. tetherd's /readyz is built on it.
func Usable(src x509svid.Source, now time.Time) error {
	s, err := src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("svid: no SVID: %w", err)
	}
	if len(s.Certificates) == 0 {
		return errors.New("svid: empty SVID")
	}
	leaf := s.Certificates[0]
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("svid: SVID not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(leaf.NotAfter) {
		return fmt.Errorf("svid: SVID expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// StaticSource serves one SVID and one bundle set; dev mode and tests use it.
type StaticSource struct {
	SVID    *x509svid.SVID
	Bundles *x509bundle.Set
}

// GetX509SVID implements x509svid.Source.
func (s *StaticSource) GetX509SVID() (*x509svid.SVID, error) { return s.SVID, nil }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *StaticSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.Bundles.GetX509BundleForTrustDomain(td)
}

// Close implements Source.
func (s *StaticSource) Close() error { return nil }
