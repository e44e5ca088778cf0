package main

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// fakeAgent is a SPIFFE Workload API that hands out one X.509 SVID, or none
// (as a SPIRE agent does for a process that no registration entry matches).
type fakeAgent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	svid   *x509svid.SVID
	bundle *x509.Certificate
}

func (a *fakeAgent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if a.svid == nil {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	var chain []byte
	for _, c := range a.svid.Certificates {
		chain = append(chain, c.Raw...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(a.svid.PrivateKey)
	if err != nil {
		return err
	}
	err = stream.Send(&workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId:    a.svid.ID.String(),
		X509Svid:    chain,
		X509SvidKey: key,
		Bundle:      a.bundle.Raw,
	}}})
	if err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// startAgent serves a on a unix socket and returns its address.
func startAgent(t *testing.T, a *fakeAgent) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent-") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "unix://" + path
}

func TestWorkloadAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	agentSVID := s.ca.Issue(t, aliceID)
	addr := startAgent(t, &fakeAgent{svid: agentSVID, bundle: s.ca.Cert})
	env := map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": "", "SPIFFE_ENDPOINT_SOCKET": addr}

	r := alice.runEnv(env, "login", "-o", "json")
	require.Equal(t, 0, r.code, r.String())
	var out api.SessionResponse
	decodeJSON(t, r.stdout, &out)
	assert.Equal(t, aliceID, out.Session.SPIFFEID)
	assert.Equal(t, svid.Fingerprint(agentSVID.Certificates[0]), out.Session.CNF.X5TS256, "the Workload API's SVID was presented")

	// The flag works as well as the variable.
	r = alice.runEnv(map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": ""}, "--workload-api", addr, "whoami")
	require.Equal(t, 0, r.code, r.String())
	assert.Contains(t, r.stdout, aliceID)
}

func TestWorkloadAPINoEntry(t *testing.T) {
	t.Parallel()
	addr := startAgent(t, &fakeAgent{})
	u := &user{t: t, env: map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": t.TempDir(),
		"TETHER_SERVER_ID": serverID, "SPIFFE_ENDPOINT_SOCKET": addr,
	}}
	u.fail(1, []string{"whoami", "--workload-api-timeout", "500ms"},
		"no X.509 SVID from the Workload API at "+addr+" within 500ms", "no registration entry matches this process")
}
