package svid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
// entry matches this process, so the error says what to check. If log is not
// nil, the Workload API client's own messages (losing the agent, retrying,
// reconnecting) go to it as workloadapi events.
func NewWorkloadSource(ctx context.Context, addr string, timeout time.Duration, log *slog.Logger) (*workloadapi.X509Source, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := []workloadapi.ClientOption{workloadapi.WithAddr(addr)}
	if log != nil {
		opts = append(opts, workloadapi.WithLogger(slogAdapter{log}))
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(opts...))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("svid: no X.509 SVID from the Workload API at %s within %s: most likely no registration entry matches this process (uid %d), or no agent listens there", addr, timeout, os.Getuid())
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

// slogAdapter gives go-spiffe's logger interface an slog backend.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Debugf(format string, args ...any) { a.emit(slog.LevelDebug, format, args) }
func (a slogAdapter) Infof(format string, args ...any)  { a.emit(slog.LevelInfo, format, args) }
func (a slogAdapter) Warnf(format string, args ...any)  { a.emit(slog.LevelWarn, format, args) }
func (a slogAdapter) Errorf(format string, args ...any) { a.emit(slog.LevelError, format, args) }

func (a slogAdapter) emit(level slog.Level, format string, args []any) {
	if a.log.Enabled(context.Background(), level) {
		a.log.Log(context.Background(), level, "workloadapi", slog.String("detail", fmt.Sprintf(format, args...)))
	}
}
