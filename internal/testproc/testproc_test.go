package testproc_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
)

// sh starts a shell script as a child of the test.
func sh(t *testing.T, script string) *testproc.Process {
	t.Helper()
	return testproc.StartT(t, testproc.Config{Name: "script", Path: "/bin/sh", Args: []string{"-c", script}})
}

func TestEventsAndExit(t *testing.T) {
	in, feed := io.Pipe()
	p := testproc.StartT(t, testproc.Config{Name: "script", Path: "/bin/sh", Stdin: in, Args: []string{"-c",
		`echo '{"msg":"started","n":1}' >&2; echo 'not JSON' >&2; echo out; read line; echo '{"msg":"started","n":2}' >&2; exit 3`}})
	ev := p.Event(t, "started", 1, 10*time.Second)
	require.InDelta(t, 1, ev["n"], 0)
	require.Positive(t, p.PID())
	require.False(t, p.Exited())
	require.Equal(t, -1, p.ExitCode())

	// The script waits for a line of input.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.WaitEvent(ctx, "started", 2)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "script did not log started #2")

	_, err = io.WriteString(feed, "go on\n")
	require.NoError(t, err)
	require.NoError(t, feed.Close())
	require.Equal(t, 3, p.Exit(t, 10*time.Second))
	require.Len(t, p.Events("started"), 2)
	require.Equal(t, "out\n", p.Stdout())
	require.Equal(t, 3, p.ExitCode())
	require.Error(t, p.WaitErr())
	_, err = p.WaitEvent(context.Background(), "never", 1)
	require.ErrorContains(t, err, "exited with code 3", "an exited process is not waited on")
}

func TestStopEscalatesToKill(t *testing.T) {
	// The shell ignores SIGTERM, and so does the child it forked: SIGKILL
	// after the grace period reaches the whole group.
	p := sh(t, `trap '' TERM; sleep 60 & echo '{"msg":"up"}' >&2; wait`)
	p.Event(t, "up", 1, 10*time.Second)
	start := time.Now()
	require.NoError(t, p.Stop(200*time.Millisecond))
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	require.True(t, p.Exited())
	require.Equal(t, -1, p.ExitCode(), "killed by a signal")
	require.NoError(t, p.Stop(time.Second), "a second Stop is harmless")
	require.NoError(t, p.Kill())
}

func TestSignalReachesTheGroup(t *testing.T) {
	// SIGUSR1, not SIGHUP: a shell cannot trap a signal that was ignored
	// when it started, and under nohup (how CI may be started) SIGHUP is.
	p := sh(t, `trap 'echo "{\"msg\":\"usr1\"}" >&2' USR1; echo '{"msg":"up"}' >&2; while :; do sleep 0.05; done`)
	p.Event(t, "up", 1, 10*time.Second)
	require.NoError(t, p.Signal(syscall.SIGUSR1))
	p.Event(t, "usr1", 1, 10*time.Second)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	require.Equal(t, -1, p.Exit(t, 10*time.Second))
	require.NoError(t, p.Signal(syscall.SIGTERM), "a signal to an exited process is no error")
}

func TestExec(t *testing.T) {
	p := testproc.Exec(t, testproc.Config{Path: "/bin/sh", Args: []string{"-c", `echo "$GREETING"; echo oops >&2; exit 1`},
		Env: []string{"GREETING=hello"}}, 10*time.Second)
	require.Equal(t, 1, p.ExitCode())
	require.Equal(t, "hello\n", p.Stdout())
	require.Equal(t, "oops\n", p.Stderr())
	require.Equal(t, "sh", p.Name())
	require.Contains(t, p.Report(), "----- sh (pid ")
	require.Contains(t, p.Report(), "exit code 1")
}

func TestStartFails(t *testing.T) {
	_, err := testproc.Start(testproc.Config{Path: "/nonexistent/program"})
	require.ErrorContains(t, err, "testproc: start program")
}

func TestStartFunc(t *testing.T) {
	p := testproc.StartFuncT(t, "main", func(ctx context.Context, stdout, stderr io.Writer) int {
		_, _ = fmt.Fprintln(stdout, "hello")
		_, _ = fmt.Fprintln(stderr, `{"msg":"serving"}`)
		<-ctx.Done()
		_, _ = fmt.Fprintln(stderr, `{"msg":"stopped"}`)
		return 0
	})
	p.Event(t, "serving", 1, 10*time.Second)
	require.Zero(t, p.PID())
	require.ErrorContains(t, p.Signal(syscall.SIGHUP), "takes SIGTERM, SIGINT or SIGKILL")
	require.NoError(t, p.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.Exit(t, 10*time.Second))
	require.Len(t, p.Events("stopped"), 1)
	require.Equal(t, "hello\n", p.Stdout())
	require.NoError(t, p.WaitErr())
}

func TestWaitHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ready := make(chan struct{})
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-ready:
			_, _ = io.WriteString(w, "ready")
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + ln.Addr().String() + "/readyz"

	p := sh(t, `sleep 60`)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = p.WaitHTTP(ctx, url, http.StatusOK)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "last: 503 starting")

	require.Equal(t, "starting\n", p.HTTP(t, url, http.StatusServiceUnavailable, 10*time.Second))
	close(ready)
	require.Equal(t, "ready", p.HTTP(t, url, http.StatusOK, 10*time.Second))

	require.NoError(t, p.Kill())
	start := time.Now()
	_, err = p.WaitHTTP(context.Background(), "http://127.0.0.1:1/readyz", http.StatusOK)
	require.ErrorContains(t, err, "exited with code -1")
	require.Less(t, time.Since(start), 5*time.Second, "a dead process is not waited on")
}

func TestLogOnFailure(t *testing.T) {
	// A subtest that fails, run in a fake testing.TB, gets the output.
	tb := &recorder{TB: t}
	p := testproc.StartT(tb, testproc.Config{Path: "/bin/sh", Args: []string{"-c", `echo 'the line that explains it' >&2; sleep 60`}})
	testutil.WaitFor(t, 10*time.Second, "the line", func() bool { return strings.Contains(p.Stderr(), "explains") })
	tb.failed = true
	tb.cleanup()
	require.True(t, p.Exited(), "killed at the end of the test")
	require.Contains(t, tb.logs.String(), "the line that explains it")
	require.Contains(t, tb.logs.String(), "pid "+strconv.Itoa(p.PID()))
}

// recorder is a testing.TB whose cleanups run when the test says, and that
// records what is logged.
type recorder struct {
	testing.TB
	failed   bool
	cleanups []func()
	logs     strings.Builder
}

func (r *recorder) Cleanup(f func())        { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Failed() bool            { return r.failed }
func (r *recorder) Log(args ...any)         { fmt.Fprintln(&r.logs, args...) }
func (r *recorder) Error(args ...any)       { r.TB.Error(args...) }
func (r *recorder) Logf(f string, a ...any) { fmt.Fprintf(&r.logs, f+"\n", a...) }

func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestBuild(t *testing.T) {
	tmp, remove, err := testproc.BuildTemp(testproc.Race, "./testdata/hello")
	require.NoError(t, err)
	p := testproc.Exec(t, testproc.Config{Path: filepath.Join(tmp, "hello")}, 10*time.Second)
	require.Equal(t, "hello\n", p.Stdout())
	remove()
	require.NoDirExists(t, tmp)

	dir := t.TempDir()
	err = testproc.Build(t.Context(), dir, false, "./testdata/nowhere")
	require.ErrorContains(t, err, "testproc: go build -o "+dir+"/ ./testdata/nowhere")
	require.ErrorContains(t, err, "nowhere", "the go command's own words")
}
