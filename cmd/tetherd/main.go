// Command tetherd issues administrator sessions bound to SPIFFE identities.
//
//	tetherd [flags]            serve
//	tetherd dev [--dir DIR]    throwaway trust domain, for trying it out
//	tetherd version
//
// Exit codes: 0 after a clean shutdown, 1 when serving fails, 2 on bad
// configuration (one line naming the flag).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=..."; else the
// module version from the build info.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// usageError is a configuration or command-line error: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes tetherd with args and returns the exit code. The log and the
// error line go to stderr; dev mode's exports and version go to stdout.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops serving like SIGTERM.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	_, _ = fmt.Fprintf(stderr, "tetherd: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

func newRootCmd() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "tetherd",
		Short: "Issue administrator sessions bound to SPIFFE identities",
		Long: `tetherd issues administrator sessions bound to SPIFFE identities.

Admins log in over mTLS (TLS 1.3) with their X.509 SVID. A session is bound to
the caller's SPIFFE ID and to the SHA-256 fingerprint of its leaf certificate;
its token is worthless over any other identity or certificate. Sessions live
in memory only: a restart ends them all.`,
		Example: `  # with a SPIRE agent
  tetherd --workload-api unix:///run/spire/agent/public/api.sock \
          --admin 'spiffe://example.org/admin/*'

  # with SVID files kept fresh by spiffe-helper
  tetherd --svid-cert svid.pem --svid-key svid.key --bundle bundle.pem \
          --admin spiffe://example.org/admin/alice

  # try it out with a throwaway trust domain
  tetherd dev`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd, o, nil)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	o.register(root)
	root.AddCommand(newDevCmd(o), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "tetherd", versionString())
			return err
		},
	})
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// isCobraUsage recognises cobra's own argument errors (unknown command, too
// many arguments), which are usage errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "unknown flag", "unknown shorthand", "requires at least", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
