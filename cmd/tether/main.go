// Command tether is the admin CLI of tetherd: it logs in with the caller's
// X.509 SVID (from the SPIFFE Workload API or from PEM files), keeps the
// session token in a per-user cache, and lists and revokes sessions.
//
//	tether [global flags] login [--role NAME]... [--wait] | whoami | token | logout [--all]
//	tether [global flags] sessions list [--spiffe-id ID]
//	tether [global flags] sessions revoke SESSION_ID | --spiffe-id ID
//	tether [global flags] sessions approve|deny SESSION_ID
//	tether version | completion bash|zsh|fish|powershell
//
// Exit status: 0 on success (and for help, which tether alone prints), 1 on
// a failure (one line on stderr saying what to do), 2 on a usage error, 130
// when Ctrl-C stopped it.
package main

import (
	"context"
	"io"
	"os"

	"github.com/tetherproject/tether/internal/cli"
)

func main() {
	// Ctrl-C ends the command's context: it stops waiting (for the Workload
	// API, for tetherd) and exits 130.
	ctx, stop := cli.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the whole CLI, with its surroundings passed in so that it can be
// tested without a process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRootCmd(getenv)
	root.SetOut(stdout)
	strictCompletion(root, args)
	return cli.Main(ctx, root, args, stdout, stderr)
}
