package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
)

// waiting is a command that waits for its context to end and then fails
// as a command does when its request is cut short, or, if succeed, ends
// well anyway.
func waiting(succeed bool) *cobra.Command {
	return &cobra.Command{Use: "tool", RunE: func(cmd *cobra.Command, _ []string) error {
		<-cmd.Context().Done()
		if succeed {
			return nil
		}
		return cli.Failf("tetherd did not answer: %w", cmd.Context().Err())
	}}
}

func TestMainStoppedBySignal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cause   error
		succeed bool
		code    int
		want    string
	}{
		{"interrupted", cli.Interrupted(), false, cli.ExitInterrupted, "tool: interrupted\n"},
		{"done-anyway", cli.Interrupted(), true, cli.ExitOK, ""},
		{"canceled-without-signal", context.Canceled, false, cli.ExitFailure, "tool: tetherd did not answer: context canceled\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(t.Context())
			cancel(tc.cause)
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tc.code, cli.Main(ctx, waiting(tc.succeed), nil, &stdout, &stderr))
			assert.Equal(t, tc.want, stderr.String())
			assert.Empty(t, stdout.String())
		})
	}
	assert.Equal(t, 130, cli.ExitCode(cli.Interrupted()), "128 + SIGINT, as shells report Ctrl-C")
}

func TestSignalContext(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
		msg  string
	}{
		{syscall.SIGINT, cli.ExitInterrupted, "interrupted"},
		{syscall.SIGTERM, 143, "terminated"},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			ctx, stop := cli.SignalContext(t.Context())
			defer stop()
			require.NoError(t, syscall.Kill(os.Getpid(), tc.sig))
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("%v did not end the context", tc.sig)
			}
			cause := context.Cause(ctx)
			assert.Equal(t, tc.code, cli.ExitCode(cause))
			assert.EqualError(t, cause, tc.msg)
		})
	}

	// Stopped without a signal: canceled, and no signal's error.
	ctx, stop := cli.SignalContext(t.Context())
	stop()
	<-ctx.Done()
	assert.Equal(t, cli.ExitFailure, cli.ExitCode(context.Cause(ctx)), fmt.Sprint(context.Cause(ctx)))
}
