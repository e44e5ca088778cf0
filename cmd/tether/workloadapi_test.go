package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// startAgent serves a fake Workload API (internal/fakeworkload) handing out
// s with bundle, or no SVID at all if s is nil (as a SPIRE agent does for a
// process that no registration entry matches), and returns its address.
func startAgent(t *testing.T, s *x509svid.SVID, bundle *x509bundle.Bundle) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent-") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fw := fakeworkload.New(filepath.Join(dir, "agent.sock"))
	if s == nil {
		fw.SetError(codes.PermissionDenied, "no identity issued")
	} else {
		require.NoError(t, fw.SetSVID(s, bundle))
	}
	require.NoError(t, fw.Start())
	t.Cleanup(fw.Stop)
	return fw.Addr()
}

func TestWorkloadAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	agentSVID := s.ca.Issue(t, aliceID)
	addr := startAgent(t, agentSVID, s.ca.Bundle())
	env := map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": "", "SPIFFE_ENDPOINT_SOCKET": addr}

	r := alice.runEnv(env, "login", "-o", "json")
	require.Equal(t, 0, r.code, r.String())
	var out api.SessionResponse
	decodeJSON(t, r.stdout, &out)
	require.Equal(t, aliceID, out.Session.SPIFFEID)
	require.Equal(t, svid.Fingerprint(agentSVID.Certificates[0]), out.Session.CNF.X5TS256, "the Workload API's SVID was presented")

	// The flag works as well as the variable.
	r = alice.runEnv(map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": ""}, "--workload-api", addr, "whoami")
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stdout, aliceID)
}

func TestWorkloadAPINoEntry(t *testing.T) {
	t.Parallel()
	addr := startAgent(t, nil, nil)
	u := &user{t: t, env: map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": t.TempDir(),
		"TETHER_SERVER_ID": serverID, "SPIFFE_ENDPOINT_SOCKET": addr,
	}}
	u.fail(1, []string{"whoami", "--workload-api-timeout", "500ms"},
		"no X.509 SVID from the Workload API at "+addr+" within 500ms", "no registration entry matches this process")
}
