package fakeworkload_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/svid"
)

const serverID = "spiffe://example.org/tetherd"

// socketPath is a short unix socket path (they are limited to ~107 bytes).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "api.sock")
}

func start(t *testing.T) *fakeworkload.Server {
	t.Helper()
	fw := fakeworkload.New(socketPath(t))
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.Stop)
	return fw
}

func leafOf(t *testing.T, src x509svid.Source) string {
	t.Helper()
	s, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Fingerprint(s.Certificates[0])
}

// waitUpdated waits for the source's next update, with a deadline.
func waitUpdated(t *testing.T, src *workloadapi.X509Source, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := src.WaitUntilUpdated(ctx); err != nil {
		t.Fatalf("no update from the Workload API within %s: %v", within, err)
	}
}

func TestRotationLossAndReturn(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := start(t)
	first := ca.Issue(t, serverID)
	if err := fw.SetSVID(first, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	src, err := svid.NewWorkloadSource(context.Background(), fw.Addr(), 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got, want := leafOf(t, src), svid.Fingerprint(first.Certificates[0]); got != want {
		t.Fatalf("first SVID: got leaf %s, want %s", got, want)
	}

	// Rotation: pushed to the open stream.
	second := ca.Issue(t, serverID)
	if err := fw.SetSVID(second, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	waitUpdated(t, src, 5*time.Second)
	if got, want := leafOf(t, src), svid.Fingerprint(second.Certificates[0]); got != want {
		t.Fatalf("after rotation: got leaf %s, want %s", got, want)
	}

	// Loss: the source keeps the last SVID.
	fw.Stop()
	if got, want := leafOf(t, src), svid.Fingerprint(second.Certificates[0]); got != want {
		t.Fatalf("while lost: got leaf %s, want the last one %s", got, want)
	}

	// Return with a new SVID: the source reconnects by itself.
	third := ca.Issue(t, serverID)
	if err := fw.SetSVID(third, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	waitUpdated(t, src, 20*time.Second)
	if got, want := leafOf(t, src), svid.Fingerprint(third.Certificates[0]); got != want {
		t.Fatalf("after return: got leaf %s, want %s", got, want)
	}
	if n := fw.Fetches(); n < 2 {
		t.Fatalf("fetches = %d, want a new stream after the return", n)
	}
}

func TestPermissionDeniedTimesOut(t *testing.T) {
	fw := start(t)
	fw.SetError(codes.PermissionDenied, "no identity issued")
	begin := time.Now()
	src, err := svid.NewWorkloadSource(context.Background(), fw.Addr(), 500*time.Millisecond, nil)
	if err == nil {
		_ = src.Close()
		t.Fatal("NewWorkloadSource succeeded without an SVID")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("gave up after %s, want about the 500ms timeout", d)
	}
}

func TestSecurityHeaderAndUnimplemented(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := start(t)
	if err := fw.SetSVID(ca.Issue(t, serverID), ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(fw.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := workload.NewSpiffeWorkloadAPIClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	stream, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("without the security header: got %v, want InvalidArgument", err)
	}

	withHeader := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err = client.FetchX509SVID(withHeader, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || len(resp.GetSvids()) != 1 || resp.GetSvids()[0].GetSpiffeId() != serverID {
		t.Fatalf("with the header: got %v, %v", resp, err)
	}
	if _, err := client.FetchJWTSVID(withHeader, &workload.JWTSVIDRequest{Audience: []string{"x"}}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("FetchJWTSVID: got %v, want Unimplemented", err)
	}
}
