package svid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WorkloadConfig is what OpenWorkload connects to and how.
type WorkloadConfig struct {
	// Addr is the Workload API: "unix:///path" or "tcp://ip:port".
	Addr string
	// Timeout bounds the wait for the first SVID, with ID when ID is set.
	Timeout time.Duration
	// ID pins the identity (see PinState); zero pins the ID of the first
	// SVID received.
	ID spiffeid.ID
	// Logger, if set, receives the Workload API client's own messages
	// (losing the agent, retrying, reconnecting) as workloadapi events.
	Logger *slog.Logger
	// OnUpdate, if set, is called after each update from the Workload API,
	// with the SVID served from then on (the last one with the pinned ID,
	// nil if there never was one) and the pin's state. It runs on the
	// Workload API client's goroutine, the first time before OpenWorkload
	// returns: it must not block.
	OnUpdate func(served *x509svid.SVID, pin PinState)
}

// WorkloadSource is an identity from the SPIFFE Workload API (go-spiffe's
// X509Source) that serves exactly one SPIFFE ID, picked among the SVIDs the
// agent hands out: see PinState.
type WorkloadSource struct {
	x509    *workloadapi.X509Source
	onEvent func(*x509svid.SVID, PinState)
	updated chan struct{}

	mu      sync.Mutex
	pin     PinState
	current *x509svid.SVID
}

var (
	_ Source = (*WorkloadSource)(nil)
	_ Pinner = (*WorkloadSource)(nil)
)

// OpenWorkload connects to the Workload API at cfg.Addr and waits up to
// cfg.Timeout for an SVID with the pinned ID. Without a deadline go-spiffe
// would wait forever when no registration entry matches this process, so
// the error says what to check: no answer at all, or SVIDs of other IDs
// only (which it names, wrapping ErrNotPinned).
func OpenWorkload(ctx context.Context, cfg WorkloadConfig) (*WorkloadSource, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	s := &WorkloadSource{
		onEvent: cfg.OnUpdate,
		updated: make(chan struct{}, 1),
		pin:     PinState{ID: cfg.ID, Configured: !cfg.ID.IsZero()},
	}
	opts := []workloadapi.ClientOption{workloadapi.WithAddr(cfg.Addr),
		workloadapi.WithDialOptions(grpc.WithStreamInterceptor(s.watchStream))}
	if cfg.Logger != nil {
		opts = append(opts, workloadapi.WithLogger(slogAdapter{cfg.Logger}))
	}
	x, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(opts...),
		workloadapi.WithDefaultX509SVIDPicker(s.pick))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("svid: no X.509 SVID from the Workload API at %s within %s: most likely no registration entry matches this process (uid %d), or no agent listens there", cfg.Addr, cfg.Timeout, os.Getuid())
		}
		return nil, fmt.Errorf("svid: Workload API at %s: %w", cfg.Addr, err)
	}
	s.x509 = x
	// The first update has come; it may not hold the pinned ID yet (an
	// entry made while the agent runs shows up at its next sync).
	for {
		served, pin := s.state()
		if served != nil {
			return s, nil
		}
		select {
		case <-s.updated:
		case <-ctx.Done():
			_ = x.Close() // the error below is the one to report
			return nil, fmt.Errorf("svid: the Workload API at %s hands out no SVID for %s within %s, only %s: check the registration entries' SPIFFE IDs and selectors, or the pinned ID (%w)", cfg.Addr, pin.ID, cfg.Timeout, idList(pin.Offered), ErrNotPinned)
		}
	}
}

// pick is the X509Source's SVID picker: it runs at every update, on the
// Workload API client's goroutine.
func (s *WorkloadSource) pick(svids []*x509svid.SVID) *x509svid.SVID {
	s.mu.Lock()
	if s.pin.ID.IsZero() && len(svids) > 0 && svids[0] != nil {
		s.pin.ID = svids[0].ID
	}
	s.pin.Offered = ids(svids)
	match := pick(svids, s.pin.ID)
	s.pin.Missing = match == nil
	if match != nil {
		s.current = match
	}
	served, pin := s.current, s.copyPin()
	s.mu.Unlock()
	s.notify(served, pin)
	return served
}

// notify tells Updated's reader and OnUpdate that the served SVID or the
// pin's state may have changed; s.mu is not held.
func (s *WorkloadSource) notify(served *x509svid.SVID, pin PinState) {
	select {
	case s.updated <- struct{}{}:
	default:
	}
	if s.onEvent != nil {
		s.onEvent(served, pin)
	}
}

// noIdentity records that the agent issues this process no identity at all
// any more: the X.509 watch ended with PermissionDenied, which is what an
// agent answers once no registration entry matches the process (go-spiffe's
// X509Source then keeps the last SVIDs and retries, calling no picker). It
// counts as an update with no SVID: the pinned ID is missing, and the last
// SVID with it is still served until it expires, as when the agent hands out
// other IDs only. The next update that holds the pinned ID restores it.
func (s *WorkloadSource) noIdentity() {
	s.mu.Lock()
	if s.pin.Missing && len(s.pin.Offered) == 0 { // known already: a retry
		s.mu.Unlock()
		return
	}
	s.pin.Offered, s.pin.Missing = nil, true
	served, pin := s.current, s.copyPin()
	s.mu.Unlock()
	s.notify(served, pin)
}

// watchStream is a gRPC stream interceptor of the Workload API client: it
// hands the X.509 watch's PermissionDenied to noIdentity.
func (s *WorkloadSource) watchStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if method != workload.SpiffeWorkloadAPI_FetchX509SVID_FullMethodName {
		return cs, err
	}
	if err != nil {
		if status.Code(err) == codes.PermissionDenied {
			s.noIdentity()
		}
		return cs, err
	}
	return &x509Watch{ClientStream: cs, s: s}, nil
}

// x509Watch is the X.509 watch's stream, as watchStream sees it.
type x509Watch struct {
	grpc.ClientStream
	s *WorkloadSource
}

func (w *x509Watch) RecvMsg(m any) error {
	err := w.ClientStream.RecvMsg(m)
	if status.Code(err) == codes.PermissionDenied {
		w.s.noIdentity()
	}
	return err
}

func (s *WorkloadSource) state() (*x509svid.SVID, PinState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, s.copyPin()
}

// copyPin is the pin state with a copy of Offered; s.mu is held.
func (s *WorkloadSource) copyPin() PinState {
	p := s.pin
	p.Offered = append([]spiffeid.ID(nil), p.Offered...)
	return p
}

// GetX509SVID implements x509svid.Source: the SVID with the pinned ID.
func (s *WorkloadSource) GetX509SVID() (*x509svid.SVID, error) {
	served, pin := s.state()
	if served == nil {
		return nil, fmt.Errorf("svid: no SVID for %s", pin.ID)
	}
	return served, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *WorkloadSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.x509.GetX509BundleForTrustDomain(td)
}

// Pin implements Pinner.
func (s *WorkloadSource) Pin() PinState {
	_, pin := s.state()
	return pin
}

// Updated receives a value after updates from the Workload API (several
// updates in a row may come as one).
func (s *WorkloadSource) Updated() <-chan struct{} { return s.updated }

// Close drops the connection to the Workload API. It is safe to call more
// than once.
func (s *WorkloadSource) Close() error { return s.x509.Close() }
