package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
)

// newTool is a command tree like tetherd's and tether's: a runnable root
// without Args, a flag, commands with cobra's own validators, and commands
// that return each kind of error.
func newTool() *cobra.Command {
	var n int
	root := &cobra.Command{
		Use:  "tool",
		RunE: func(*cobra.Command, []string) error { return cli.Usagef("give a command") },
	}
	root.PersistentFlags().IntVar(&n, "count", 1, "a number")
	ok := &cobra.Command{Use: "ok", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	get := &cobra.Command{Use: "get NAME", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error { return nil }}
	fail := &cobra.Command{Use: "fail", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("while failing: %w", cli.Failf("cannot reach %s", "it"))
	}}
	plain := &cobra.Command{Use: "plain", RunE: func(*cobra.Command, []string) error {
		return errors.Join(errors.New("serving stopped"), errors.New("draining: timeout"))
	}}
	usage := &cobra.Command{Use: "usage", RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("checking: %w", cli.Usagef("--count: must be positive"))
	}}
	root.AddCommand(ok, get, fail, plain, usage)
	return root
}

func TestMainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // the stderr line; "" for none
	}{
		{"ok", []string{"ok"}, cli.ExitOK, ""},
		{"ok/flag", []string{"ok", "--count", "3"}, cli.ExitOK, ""},
		{"usage/no-command", nil, cli.ExitUsage, "tool: give a command (see 'tool --help')"},
		{"usage/unknown-command", []string{"gte"}, cli.ExitUsage, `tool: unknown command "gte" for "tool" (did you mean get?) (see 'tool --help')`},
		{"usage/unknown-flag", []string{"ok", "--verbose"}, cli.ExitUsage, "tool: unknown flag: --verbose (see 'tool --help')"},
		{"usage/unknown-shorthand", []string{"ok", "-v"}, cli.ExitUsage, "tool: unknown shorthand flag: 'v' in -v (see 'tool --help')"},
		{"usage/bad-value", []string{"ok", "--count", "many"}, cli.ExitUsage, `tool: invalid argument "many" for "--count" flag: strconv.ParseInt: parsing "many": invalid syntax (see 'tool --help')`},
		{"usage/flag-without-value", []string{"ok", "--count"}, cli.ExitUsage, "tool: flag needs an argument: --count (see 'tool --help')"},
		{"usage/extra-arg", []string{"ok", "x"}, cli.ExitUsage, `tool: unknown command "x" for "tool ok" (see 'tool --help')`},
		{"usage/missing-arg", []string{"get"}, cli.ExitUsage, "tool: accepts 1 arg(s), received 0 (see 'tool --help')"},
		{"usage/default-completion-command", []string{"completion", "bash", "x"}, cli.ExitUsage, `tool: unknown command "x" for "tool completion bash" (see 'tool --help')`},
		{"usage/wrapped", []string{"usage"}, cli.ExitUsage, "tool: checking: --count: must be positive (see 'tool --help')"},
		{"failure/wrapped", []string{"fail"}, cli.ExitFailure, "tool: while failing: cannot reach it"},
		{"failure/untyped-on-one-line", []string{"plain"}, cli.ExitFailure, "tool: serving stopped; draining: timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), newTool(), tc.args, &stdout, &stderr)
			assert.Equal(t, tc.code, code, "stderr: %s", stderr.String())
			if tc.want == "" {
				assert.Empty(t, stderr.String())
				return
			}
			assert.Equal(t, tc.want+"\n", stderr.String())
			assert.Empty(t, stdout.String(), "no usage text: the line is all")
		})
	}
}

func TestExitCode(t *testing.T) {
	assert.Equal(t, cli.ExitOK, cli.ExitCode(nil))
	assert.Equal(t, cli.ExitFailure, cli.ExitCode(errors.New("any")))
	assert.Equal(t, cli.ExitFailure, cli.ExitCode(cli.Failf("x")))
	assert.Equal(t, cli.ExitUsage, cli.ExitCode(cli.Usagef("x")))
	assert.Equal(t, cli.ExitUsage, cli.ExitCode(fmt.Errorf("wrapped: %w", cli.Usagef("x"))))

	// The cause stays reachable.
	cause := errors.New("cause")
	err := cli.Usagef("--flag: %w", cause)
	require.ErrorIs(t, err, cause)
	assert.Equal(t, "--flag: cause", err.Error())
}

func TestVersion(t *testing.T) {
	v := cli.Version()
	require.NotEmpty(t, v)
	assert.False(t, strings.ContainsAny(v, " \n"), "one word: %q", v)
}
