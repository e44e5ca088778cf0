// Command tetherd issues administrator sessions bound to SPIFFE identities.
//
//	tetherd [flags]            serve
//	tetherd dev [--dir DIR]    throwaway trust domain, for trying it out
//	tetherd version            (or --version)
//
// Serving, every flag can also be given as a TETHERD_<FLAG> environment
// variable or in the HCL file of --config (settings.go): flag > variable >
// file > default.
//
// Exit codes: 0 after a clean shutdown (a drain cut at --shutdown-timeout
// included), 1 when serving fails, 2 on bad configuration (one line naming
// the setting where it came from: the flag, the TETHERD_ variable, or the
// settings file's line and key).
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/tetherproject/tether/internal/cli"
)

// usagef is a configuration or command-line error: exit 2.
func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

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
	return cli.Main(ctx, newRootCmd(), args, stdout, stderr)
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
in tetherd's memory (a restart ends them all), or with --store etcd in an etcd
cluster that any number of replicas share: a token from one replica works on
every replica, and a logout or revoke on one holds on all.`,
		Example: `  # with a SPIRE agent
  tetherd --workload-api unix:///tmp/spire-agent/public/api.sock \
          --spiffe-id spiffe://example.org/tetherd \
          --admin 'spiffe://example.org/admin/*'

  # the same from a settings file (keys: the flags' names with _) and the
  # environment (TETHERD_<FLAG>); a flag beats a variable beats the file
  TETHERD_LOG_LEVEL=debug tetherd --config /etc/tetherd/tetherd.hcl

  # roles: every admin holds "ops"; "breakglass" is asked for (tether login
  # --role breakglass), ends after 15m, and waits until another admin
  # approves it (tether sessions approve SESSION_ID)
  tetherd --workload-api unix:///tmp/spire-agent/public/api.sock \
          --admin 'spiffe://example.org/admin/*' \
          --role 'ops=spiffe://example.org/admin/*' \
          --role breakglass=spiffe://example.org/admin/alice,spiffe://example.org/admin/bob \
          --role-ttl breakglass=15m --role-approvals breakglass=1

  # replicas sharing their sessions through etcd, reached over mTLS with
  # tetherd's own SVID (the members' certificates chain to its trust bundle)
  tetherd --workload-api unix:///tmp/spire-agent/public/api.sock \
          --admin 'spiffe://example.org/admin/*' \
          --store etcd --etcd-endpoints https://etcd-0:2379,https://etcd-1:2379,https://etcd-2:2379

  # with SVID files kept fresh by spiffe-helper
  tetherd --svid-cert svid.pem --svid-key svid.key --bundle bundle.pem \
          --admin spiffe://example.org/admin/alice

  # try it out with a throwaway trust domain
  tetherd dev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := loadSettings(cmd.Flags(), os.Environ())
			if err != nil {
				return err
			}
			o.settings = st
			return serve(cmd, o, nil)
		},
	}
	o.register(root)
	o.registerServe(root)
	root.AddCommand(newDevCmd(o), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "tetherd", cli.Version())
			return err
		},
	})
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}
