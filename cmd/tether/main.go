// Command tether is the admin CLI of tetherd: it logs in with the caller's
// X.509 SVID (from the SPIFFE Workload API or from PEM files), keeps the
// session token in a per-user cache, and lists and revokes sessions.
//
//	tether [global flags] login | whoami | logout
//	tether [global flags] sessions list [--spiffe-id ID]
//	tether [global flags] sessions revoke SESSION_ID | --spiffe-id ID
//	tether version
//
// Exit status: 0 on success, 1 on a failure (one line on stderr saying what
// to do), 2 on a usage error.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherproject/tether/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the whole CLI, with its surroundings passed in so that it can be
// tested without a process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return cli.Main(ctx, newRootCmd(getenv), args, stdout, stderr)
}
