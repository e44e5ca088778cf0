package testproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/testutil"
)

const (
	// pollEvery is how often a wait looks again.
	pollEvery = 10 * time.Millisecond
	// waitDelay bounds how long a child's exit waits for the copies of its
	// output (a grandchild may hold the pipes open).
	waitDelay = 5 * time.Second
	// mainBound is how long a Main may take to return once its context ends
	// before it is reported as hung (a goroutine cannot be killed).
	mainBound = 15 * time.Second
)

// Config is a program to start.
type Config struct {
	// Name names the process in errors and logs; Path's base name if empty.
	Name string
	// Path is the program.
	Path string
	// Args are its arguments.
	Args []string
	// Env is its whole environment; nil inherits the test's.
	Env []string
	// Dir is its working folder; empty is the test's.
	Dir string
	// Stdin is its standard input; nil is none.
	Stdin io.Reader
	// Stdout, if set, takes its standard output instead of the capture: a
	// pipe the test reads a protocol from.
	Stdout io.Writer
	// Log, if set, takes its standard output and error instead of the
	// capture: a file kept after the run. An *os.File is handed to the child
	// as it is, so its caller may close it once Start returns.
	Log io.Writer
}

// Main is a program's main function run in the test's own process: it
// returns the exit code, and returns once ctx ends, as the program does on
// SIGTERM.
type Main func(ctx context.Context, stdout, stderr io.Writer) int

// Event is one line of a JSON log: the "msg" member names it.
type Event map[string]any

// Process is a started program. Its methods are safe for concurrent use.
type Process struct {
	name   string
	cmd    *exec.Cmd          // nil for a Main
	cancel context.CancelFunc // a Main's SIGTERM

	stdout, stderr testutil.Buffer

	done chan struct{}
	code int   // the exit code, set before done is closed
	err  error // exec.Cmd.Wait's result (a Main's non-zero exit), likewise
	once sync.Once
}

// Start starts cfg in a process group of its own. Its caller stops it (Stop,
// Kill), or uses StartT.
func Start(cfg Config) (*Process, error) {
	name := cfg.Name
	if name == "" {
		name = filepath.Base(cfg.Path)
	}
	p := &Process{name: name, done: make(chan struct{}), code: -1}
	cmd := exec.Command(cfg.Path, cfg.Args...) //nolint:gosec // G204: a test harness runs the program its test names
	cmd.Env, cmd.Dir, cmd.Stdin = cfg.Env, cfg.Dir, cfg.Stdin
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if cfg.Log != nil {
		cmd.Stdout, cmd.Stderr = cfg.Log, cfg.Log
	}
	if cfg.Stdout != nil {
		cmd.Stdout = cfg.Stdout
	}
	cmd.SysProcAttr = procAttr()
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testproc: start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		err := cmd.Wait()
		code := -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		p.finish(code, err)
	}()
	return p, nil
}

// StartFunc runs main in a goroutine of the test's process, named name. Its
// standard output and error are captured as a child's are; SIGTERM, SIGINT
// and SIGKILL end its context.
func StartFunc(name string, main Main) *Process {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{name: name, cancel: cancel, done: make(chan struct{}), code: -1}
	go func() {
		code := main(ctx, &p.stdout, &p.stderr)
		var err error
		if code != 0 {
			err = fmt.Errorf("exit status %d", code)
		}
		p.finish(code, err)
	}()
	return p
}

// StartT is Start for a test: a program that does not start fails tb, and
// the process is killed when the test ends, its output logged if the test
// failed.
func StartT(tb testing.TB, cfg Config) *Process {
	tb.Helper()
	p, err := Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	p.watch(tb)
	return p
}

// StartFuncT is StartFunc for a test, watched as StartT watches a child.
func StartFuncT(tb testing.TB, name string, main Main) *Process {
	p := StartFunc(name, main)
	p.watch(tb)
	return p
}

// Exec runs cfg to its end and returns the exited process (ExitCode, Stdout,
// Stderr). If it runs longer than within it is killed and fails tb.
func Exec(tb testing.TB, cfg Config, within time.Duration) *Process {
	tb.Helper()
	p, err := Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if _, err := p.WaitExit(ctx); err != nil {
		_ = p.Kill()
		tb.Fatalf("%v\n%s", err, p.Report())
	}
	return p
}

func (p *Process) watch(tb testing.TB) {
	tb.Cleanup(func() {
		if err := p.Kill(); err != nil {
			tb.Error(err)
		}
		if tb.Failed() {
			tb.Log(p.Report())
		}
	})
}

func (p *Process) finish(code int, err error) {
	p.code, p.err = code, err
	close(p.done)
}

// Name is the process's name in messages.
func (p *Process) Name() string { return p.name }

// PID is the process ID (and process group ID) of a child; 0 for a Main.
func (p *Process) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed once the process has exited and its output is all captured.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit code once the process has exited; -1 while it runs
// and when a signal ended it.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.code
}

// WaitErr is exec.Cmd.Wait's error once a child has exited (for a Main, an
// error saying its non-zero exit code); nil before.
func (p *Process) WaitErr() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stdout is everything captured from the standard output so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr is everything captured from the standard error so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Report is the process's state and captured output, for a failed test's
// log.
func (p *Process) Report() string {
	state := "running"
	if p.Exited() {
		state = fmt.Sprintf("exit code %d", p.code)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "----- %s (pid %d, %s) -----", p.name, p.PID(), state)
	for _, out := range []struct{ name, text string }{{"stdout", p.Stdout()}, {"stderr", p.Stderr()}} {
		if out.text != "" {
			fmt.Fprintf(&b, "\n%s:\n%s", out.name, strings.TrimRight(out.text, "\n"))
		}
	}
	return b.String()
}

// Signal sends sig to the child's process group. A Main takes SIGTERM,
// SIGINT and SIGKILL, which end its context, and no other signal.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if p.cmd == nil {
		switch sig {
		case syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL:
			p.cancel()
			return nil
		}
		return fmt.Errorf("testproc: %s runs in the test's process: it takes SIGTERM, SIGINT or SIGKILL, not %v", p.name, sig)
	}
	err := syscall.Kill(-p.PID(), sig)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return fmt.Errorf("testproc: %v to %s (pid %d): %w", sig, p.name, p.PID(), err)
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then kills
// it and waits for it. It is safe to call more than once and after the
// process has exited. The error is about stopping, not about the exit code.
func (p *Process) Stop(grace time.Duration) error {
	var err error
	p.once.Do(func() {
		err = p.Signal(syscall.SIGTERM)
		if !p.waitFor(grace) {
			err = errors.Join(err, p.Signal(syscall.SIGKILL))
		}
	})
	return errors.Join(err, p.reaped())
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Process) Kill() error {
	var err error
	p.once.Do(func() { err = p.Signal(syscall.SIGKILL) })
	return errors.Join(err, p.reaped())
}

// reaped waits until the process has exited: a child always does once
// killed; a Main that ignores its context is reported after mainBound.
func (p *Process) reaped() error {
	if p.cmd != nil {
		<-p.done
		return nil
	}
	if !p.waitFor(mainBound) {
		return fmt.Errorf("testproc: %s did not return within %s of the end of its context", p.name, mainBound)
	}
	return nil
}

func (p *Process) waitFor(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}

// Events returns the events named msg of the JSON log the program writes to
// its standard error, in order. Lines that are not JSON are skipped.
func (p *Process) Events(msg string) []Event {
	var out []Event
	for _, line := range strings.Split(p.Stderr(), "\n") {
		var ev Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev["msg"] == msg {
			out = append(out, ev)
		}
	}
	return out
}

// WaitEvent waits for the n-th event named msg (n counts from 1) and
// returns it. It gives up when ctx ends or the process exits without it.
func (p *Process) WaitEvent(ctx context.Context, msg string, n int) (Event, error) {
	var ev Event
	err := p.poll(ctx, func() bool {
		evs := p.Events(msg)
		if len(evs) < n {
			return false
		}
		ev = evs[n-1]
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("testproc: %s did not log %s #%d: %w", p.name, msg, n, err)
	}
	return ev, nil
}

// WaitExit waits for the process to exit and returns its exit code.
func (p *Process) WaitExit(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.code, nil
	case <-ctx.Done():
		return -1, fmt.Errorf("testproc: %s still running: %w", p.name, ctx.Err())
	}
}

// healthClient asks a process's plain-HTTP endpoints (/readyz, /metrics),
// one connection a request, so that no connection outlives the test.
var healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// WaitHTTP waits until GET url answers the status want and returns the
// answer's body. It gives up when ctx ends, saying what url last answered,
// and at once if the process exits.
func (p *Process) WaitHTTP(ctx context.Context, url string, want int) (string, error) {
	var body, last string
	err := p.poll(ctx, func() bool {
		status, b, err := get(ctx, url)
		if err != nil {
			if ctx.Err() == nil { // else the deadline cut it: keep what was seen
				last = err.Error()
			}
			return false
		}
		last = fmt.Sprintf("%d %s", status, strings.TrimSpace(b))
		body = b
		return status == want
	})
	if err != nil {
		return "", fmt.Errorf("testproc: %s: GET %s did not answer %d: %w (last: %s)", p.name, url, want, err, last)
	}
	return body, nil
}

func get(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// poll calls cond at once and then every pollEvery until it holds, ctx ends
// or the process has exited without it holding.
func (p *Process) poll(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		exited := p.Exited() // before cond: an exited process's output is complete
		if cond() {
			return nil
		}
		if exited {
			return fmt.Errorf("exited with code %d", p.code)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Event is WaitEvent for a test: it fails tb unless the event comes within
// the deadline.
func (p *Process) Event(tb testing.TB, msg string, n int, within time.Duration) Event {
	tb.Helper()
	return mustWait(tb, within, func(ctx context.Context) (Event, error) { return p.WaitEvent(ctx, msg, n) })
}

// Exit is WaitExit for a test: it fails tb unless the process exits within
// the deadline.
func (p *Process) Exit(tb testing.TB, within time.Duration) int {
	tb.Helper()
	return mustWait(tb, within, p.WaitExit)
}

// HTTP is WaitHTTP for a test: it fails tb unless url answers want within
// the deadline.
func (p *Process) HTTP(tb testing.TB, url string, want int, within time.Duration) string {
	tb.Helper()
	return mustWait(tb, within, func(ctx context.Context) (string, error) { return p.WaitHTTP(ctx, url, want) })
}

// mustWait runs wait with a deadline of d and fails tb if it fails.
func mustWait[T any](tb testing.TB, d time.Duration, wait func(context.Context) (T, error)) T {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	v, err := wait(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
