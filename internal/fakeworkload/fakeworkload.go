package fakeworkload

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Server is a fake Workload API on a unix socket. The zero value is not
// usable: make one with New. Its methods are safe for concurrent use.
type Server struct {
	path string

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse // what streams send; nil: nothing yet
	err     error                      // if set, streams end with it
	changed chan struct{}              // closed and replaced at every change
	grpc    *grpc.Server
	done    chan struct{} // closed when the current grpc.Server's Serve returned
	fetches int
}

// New returns a stopped server for the unix socket at path. Unix socket paths
// are limited to about 107 bytes: keep path short (a folder directly under
// the system's temporary folder, not a deep t.TempDir()).
func New(path string) *Server {
	return &Server{path: path, changed: make(chan struct{})}
}

// Addr is the server's address in the form --workload-api and
// SPIFFE_ENDPOINT_SOCKET take: unix:///path.
func (s *Server) Addr() string { return "unix://" + s.path }

// Start listens on the socket (removing a stale socket file first) and
// serves until Stop. Starting a running server is an error.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grpc != nil {
		return errors.New("fakeworkload: already running")
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("fakeworkload: %w", err)
	}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		return fmt.Errorf("fakeworkload: %w", err)
	}
	g := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(g, &handler{s: s})
	done := make(chan struct{})
	s.grpc, s.done = g, done
	go func() {
		defer close(done)
		_ = g.Serve(ln) // returns when Stop closes the listener
	}()
	return nil
}

// Stop closes the socket and every open stream at once, as a crashed agent
// would; clients see the Workload API gone. Stopping a stopped server does
// nothing. Start serves again.
func (s *Server) Stop() {
	s.mu.Lock()
	g, done := s.grpc, s.done
	s.grpc, s.done = nil, nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	g.Stop()
	<-done
}

// SetSVID makes the server hand out svid with the bundle of its trust domain
// and pushes it to every open stream (a rotation when one was already out).
// It clears an error set by SetError.
func (s *Server) SetSVID(svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	resp, err := Response(svid, bundle)
	if err != nil {
		return err
	}
	s.set(resp, nil)
	return nil
}

// SetSVIDs makes the server hand out several SVIDs in one answer, in this
// order, each with bundle (as an agent does for a workload that matches
// several registration entries), and pushes them to every open stream. It
// clears an error set by SetError.
func (s *Server) SetSVIDs(bundle *x509bundle.Bundle, svids ...*x509svid.SVID) error {
	resp := &workload.X509SVIDResponse{}
	for _, svid := range svids {
		one, err := Response(svid, bundle)
		if err != nil {
			return err
		}
		resp.Svids = append(resp.Svids, one.Svids...)
	}
	if len(resp.Svids) == 0 {
		return errors.New("fakeworkload: SetSVIDs needs at least one SVID")
	}
	s.set(resp, nil)
	return nil
}

// SetResponse pushes resp as it is, for tests that need a malformed answer.
func (s *Server) SetResponse(resp *workload.X509SVIDResponse) { s.set(resp, nil) }

// SetError makes every stream end with a gRPC status of code (open streams
// at once, new ones at their start), until the next SetSVID.
// codes.PermissionDenied is what an agent answers a workload that matches no
// registration entry.
func (s *Server) SetError(code codes.Code, msg string) { s.set(nil, status.Error(code, msg)) }

// Fetches is how many FetchX509SVID streams have been opened so far.
func (s *Server) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func (s *Server) set(resp *workload.X509SVIDResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resp, s.err = resp, err
	close(s.changed)
	s.changed = make(chan struct{})
}

// state is what a stream should do now: send resp, or end with err; changed
// is closed at the next change.
type state struct {
	resp    *workload.X509SVIDResponse
	err     error
	changed <-chan struct{}
}

func (s *Server) current() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return state{resp: s.resp, err: s.err, changed: s.changed}
}

// Response is the Workload API's answer carrying svid and the bundle of its
// trust domain, DER encoded as the proto says.
func Response(svid *x509svid.SVID, bundle *x509bundle.Bundle) (*workload.X509SVIDResponse, error) {
	if svid == nil || len(svid.Certificates) == 0 || bundle == nil {
		return nil, errors.New("fakeworkload: an SVID with certificates and a bundle are required")
	}
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("fakeworkload: key: %w", err)
	}
	return &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId:    svid.ID.String(),
		X509Svid:    concatDER(svid.Certificates),
		X509SvidKey: key,
		Bundle:      concatDER(bundle.X509Authorities()),
		Hint:        svid.Hint,
	}}}, nil
}

func concatDER(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(c.Raw)
	}
	return b.Bytes()
}

// handler implements FetchX509SVID; the embedded type answers Unimplemented
// to the rest of the service.
type handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	s *Server
}

func (h *handler) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	if err := checkHeader(ctx); err != nil {
		return err
	}
	h.s.mu.Lock()
	h.s.fetches++
	h.s.mu.Unlock()
	for {
		st := h.s.current()
		if st.err != nil {
			return st.err
		}
		if st.resp != nil {
			if err := stream.Send(st.resp); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-st.changed:
		}
	}
}

// checkHeader refuses a call without the security header, as SPIRE does.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}
