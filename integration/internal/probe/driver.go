package probe

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tetherproject/tether/internal/testproc"
)

// Config is how to start a probe.
type Config struct {
	// Bin is the probe program, executable by User.
	Bin string
	// User is the Linux user to run it as (runuser -u User); empty runs it as
	// the calling user.
	User string
	// WorkloadAPI is the Workload API address, unix:///path.
	WorkloadAPI string
	// Server is tetherd's API URL, https://127.0.0.1:PORT.
	Server string
	// ServerID is tetherd's SPIFFE ID; any other server is refused.
	ServerID string
	// FetchTimeout bounds the first SVID fetch; 30s if zero.
	FetchTimeout time.Duration
	// Log receives the probe's standard error (diagnostics, never tokens).
	Log io.Writer
}

// Probe is a running probe. Do is safe for concurrent use; commands run one
// at a time.
type Probe struct {
	user    string
	p       *testproc.Process
	stdin   io.WriteCloser
	results chan Result
	readErr error // set before results is closed

	mu    sync.Mutex
	seq   int
	ready Result
}

// Start runs the probe as cfg.User and waits until it holds an SVID (its
// first line). If the Workload API gives it none within the fetch timeout
// (no entry for that uid?), the probe's own explanation is the error.
func Start(ctx context.Context, cfg Config) (*Probe, error) {
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = 30 * time.Second
	}
	args := []string{
		"-workload-api", cfg.WorkloadAPI,
		"-server", cfg.Server,
		"-server-id", cfg.ServerID,
		"-fetch-timeout", cfg.FetchTimeout.String(),
	}
	path := cfg.Bin
	name := "probe"
	if cfg.User != "" {
		path, args = "runuser", append([]string{"-u", cfg.User, "--", cfg.Bin}, args...)
		name += " as " + cfg.User
	}
	// Commands go in on stdin, results come out on stdout: pipes whose
	// child ends are the probe's alone once it has started.
	stdinR, stdin, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("probe: %w", err), stdinR.Close(), stdin.Close())
	}
	p, err := testproc.Start(testproc.Config{
		Name: name, Path: path, Args: args,
		// Run from a folder every user may enter, with no inherited socket
		// variable that could point the probe elsewhere.
		Dir: "/", Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Stdin: stdinR, Stdout: stdoutW, Log: cfg.Log,
	})
	_, _ = stdinR.Close(), stdoutW.Close()
	if err != nil {
		return nil, errors.Join(err, stdin.Close(), stdout.Close())
	}
	pr := &Probe{user: cfg.User, p: p, stdin: stdin, results: make(chan Result)}
	go pr.read(stdout)

	ctx, cancel := context.WithTimeout(ctx, cfg.FetchTimeout+10*time.Second)
	defer cancel()
	select {
	case r, ok := <-pr.results:
		switch {
		case !ok:
			err = fmt.Errorf("probe as %s: exited before it was ready: %w", cfg.User, pr.readErr)
		case r.Error != "":
			err = fmt.Errorf("probe as %s: %s", cfg.User, r.Error)
		case r.SVID == nil:
			err = fmt.Errorf("probe as %s: ready line without SVID", cfg.User)
		}
		if err != nil {
			return nil, errors.Join(err, pr.Close())
		}
		pr.ready = r
		return pr, nil
	case <-ctx.Done():
		return nil, errors.Join(fmt.Errorf("probe as %s: not ready: %w", cfg.User, ctx.Err()), pr.Close())
	}
}

func (pr *Probe) read(stdout io.ReadCloser) {
	defer close(pr.results)
	defer func() { _ = stdout.Close() }()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			pr.readErr = fmt.Errorf("probe: bad output line %q: %w", sc.Bytes(), err)
			return
		}
		pr.results <- r
	}
	pr.readErr = sc.Err()
	if pr.readErr == nil {
		pr.readErr = io.EOF
	}
}

// User is the Linux user the probe runs as.
func (pr *Probe) User() string { return pr.user }

// Ready is the probe's first line: the SVID it started with.
func (pr *Probe) Ready() Result { return pr.ready }

// Do sends c and returns the probe's result. An error means the probe did not
// answer (it exited, or ctx ended); a failed op is a Result with Error set.
func (pr *Probe) Do(ctx context.Context, c Command) (Result, error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.seq++
	c.Seq = pr.seq
	line, err := json.Marshal(c)
	if err != nil {
		return Result{}, fmt.Errorf("probe: %w", err)
	}
	if _, err := pr.stdin.Write(append(line, '\n')); err != nil {
		return Result{}, fmt.Errorf("probe as %s: write command: %w", pr.user, err)
	}
	for {
		select {
		case r, ok := <-pr.results:
			if !ok {
				return Result{}, fmt.Errorf("probe as %s: exited: %w", pr.user, pr.readErr)
			}
			if r.Seq != c.Seq {
				continue // the answer to an earlier command that timed out
			}
			return r, nil
		case <-ctx.Done():
			return Result{}, fmt.Errorf("probe as %s: no answer to %s: %w", pr.user, c.Op, ctx.Err())
		}
	}
}

// Close closes the probe's standard input (it exits at end of input), waits
// a few seconds, then kills its process group. Safe to call twice.
func (pr *Probe) Close() error {
	_ = pr.stdin.Close() // already closed on a second call
	// Drain results so the reader can finish.
	go func() {
		for range pr.results {
		}
	}()
	select {
	case <-pr.p.Done():
		return nil
	case <-time.After(5 * time.Second):
		if err := pr.p.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("probe as %s: killed after not exiting at end of input", pr.user)
	}
}

// WriteFileAs writes data to path with mode 0600, owned by uid:gid: how the
// test hands a file (a copied token) to a probe running as that user.
func WriteFileAs(path string, data []byte, uid, gid int) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}
