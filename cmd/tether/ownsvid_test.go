package main

// The CLI picks its own SVID among several by --spiffe-id or
// TETHER_SPIFFE_ID, as tetherd does.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

func TestOwnSVIDPicked(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	dir, err := os.MkdirTemp("", "agent-") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fw := fakeworkload.New(filepath.Join(dir, "agent.sock"))
	// The process matches two entries: a workload's first, alice's second.
	carol, aliceSVID := s.ca.Issue(t, carolID), s.ca.Issue(t, aliceID)
	require.NoError(t, fw.SetSVIDs(s.ca.Bundle(), carol, aliceSVID))
	require.NoError(t, fw.Start())
	t.Cleanup(fw.Stop)
	agent := map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": "", "SPIFFE_ENDPOINT_SOCKET": fw.Addr()}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range agent {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}

	// Unpicked, the first SVID (go-spiffe's default): carol, not an admin.
	alice.failEnv(agent, 1, []string{"login"}, carolID)

	// TETHER_SPIFFE_ID picks alice's.
	r := alice.runEnv(with(map[string]string{"TETHER_SPIFFE_ID": aliceID}), "login", "-o", "json")
	require.Equal(t, 0, r.code, r.String())
	var out api.SessionResponse
	decodeJSON(t, r.stdout, &out)
	require.Equal(t, aliceID, out.Session.SPIFFEID)
	require.Equal(t, svid.Fingerprint(aliceSVID.Certificates[0]), out.Session.CNF.X5TS256)

	// So does the flag, which beats the variable.
	r = alice.runEnv(with(map[string]string{"TETHER_SPIFFE_ID": carolID}), "--spiffe-id", aliceID, "whoami")
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stdout, aliceID)

	// On sessions list, --spiffe-id is the filter; the variable picks the SVID.
	r = alice.runEnv(with(map[string]string{"TETHER_SPIFFE_ID": aliceID}), "sessions", "list", "--spiffe-id", aliceID, "-o", "json")
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stdout, out.Session.SessionID)

	// An ID the agent does not hand out: named, with what it offers.
	alice.failEnv(with(map[string]string{"TETHER_SPIFFE_ID": bobID}), 1, []string{"whoami", "--workload-api-timeout", "300ms"},
		"no SVID for "+bobID, carolID, aliceID, "TETHER_SPIFFE_ID")
	alice.failEnv(with(map[string]string{"TETHER_SPIFFE_ID": "bob"}), 2, []string{"whoami"}, "TETHER_SPIFFE_ID", `"bob"`)

	// Files must hold the ID asked for.
	alice.fail(2, []string{"--spiffe-id", bobID, "whoami"}, "--spiffe-id "+bobID, "holds an SVID of "+aliceID)
	alice.rotate() // a leaf newer than the agent's, so the session rebinds to it
	alice.ok("--spiffe-id", aliceID, "whoami")
}
