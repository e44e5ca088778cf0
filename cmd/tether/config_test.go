package main

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
)

// newGlobals is the global flags on a command of their own.
func newGlobals(getenv func(string) string) (*globals, *cobra.Command) {
	g, cmd := &globals{getenv: getenv}, &cobra.Command{}
	g.register(cmd)
	return g, cmd
}

// TestTargetServerURL: --server is checked and normalised by the client's
// own ParseServerURL, so the cache file is named after the URL the client
// reports.
func TestTargetServerURL(t *testing.T) {
	env := map[string]string{envServerID: "spiffe://example.org/tetherd"}
	for _, tc := range []struct{ given, want string }{
		{"", defaultServer},
		{"https://tetherd.example.org:8443/", "https://tetherd.example.org:8443"},
		{"https://tetherd.example.org/prefix/", "https://tetherd.example.org/prefix"},
		{"http://tetherd.example.org", ""},
		{"https://user@tetherd.example.org", ""},
		{"https://tetherd.example.org/?q=1", ""},
	} {
		g, cmd := newGlobals(func(k string) string { return env[k] })
		require.NoError(t, cmd.ParseFlags([]string{"--server=" + tc.given}))
		got, err := g.target(cmd)
		if tc.want == "" {
			require.Error(t, err, tc.given)
			require.Equal(t, cli.ExitUsage, cli.ExitCode(err), tc.given)
			require.Contains(t, err.Error(), "--server")
			continue
		}
		require.NoError(t, err, tc.given)
		require.Equal(t, tc.want, got.server, tc.given)
	}
}

// TestWorkloadAPITimeoutPositive: a zero or negative --workload-api-timeout
// is a usage error, not a Workload API that never answers.
func TestWorkloadAPITimeoutPositive(t *testing.T) {
	for _, d := range []string{"0s", "-1s"} {
		g, cmd := newGlobals(func(string) string { return "" })
		require.NoError(t, cmd.ParseFlags([]string{"--workload-api", "unix:///tmp/agent.sock", "--workload-api-timeout", d}))
		_, _, err := g.identitySource(cmd)
		require.Equal(t, cli.ExitUsage, cli.ExitCode(err), d)
		require.ErrorContains(t, err, "--workload-api-timeout: must be positive")
	}
}
