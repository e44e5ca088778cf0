package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
)

// newVersioned is a root like tether's: a version command whose output
// depends on a persistent flag.
func newVersioned() *cobra.Command {
	var format string
	root := &cobra.Command{Use: "tool", RunE: func(*cobra.Command, []string) error { return cli.Usagef("give a command") }}
	root.PersistentFlags().StringVarP(&format, "output", "o", "text", "text or json")
	root.AddCommand(&cobra.Command{Use: "version", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		if format == "json" {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "{\"version\":%q}\n", cli.Version())
			return err
		}
		_, err := fmt.Fprintln(cmd.OutOrStdout(), "tool", cli.Version())
		return err
	}})
	return root
}

func TestVersionFlag(t *testing.T) {
	for _, tc := range []struct{ flag, sub []string }{
		{[]string{"--version"}, []string{"version"}},
		{[]string{"--version", "-o", "json"}, []string{"version", "-o", "json"}},
		{[]string{"-o", "json", "--version"}, []string{"-o", "json", "version"}},
	} {
		var a, b, errs bytes.Buffer
		require.Equal(t, 0, cli.Main(context.Background(), newVersioned(), tc.sub, &a, &errs), errs.String())
		require.Equal(t, 0, cli.Main(context.Background(), newVersioned(), tc.flag, &b, &errs), errs.String())
		assert.Equal(t, a.String(), b.String(), "%v", tc.flag)
		assert.Contains(t, b.String(), cli.Version())
	}

	// Without --version the root runs as before; a root without a version
	// command gets no --version.
	var out, errs bytes.Buffer
	assert.Equal(t, cli.ExitUsage, cli.Main(context.Background(), newVersioned(), nil, &out, &errs))
	bare := &cobra.Command{Use: "bare", RunE: func(*cobra.Command, []string) error { return nil }}
	errs.Reset()
	assert.Equal(t, cli.ExitUsage, cli.Main(context.Background(), bare, []string{"--version"}, &out, &errs))
	assert.Contains(t, errs.String(), "unknown flag: --version")
}
