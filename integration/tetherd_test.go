package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tetherproject/tether/integration/internal/spire"
	"github.com/tetherproject/tether/internal/testproc"
)

// daemon runs the tetherd binary against the agent's Workload API, on the
// same two ports across restarts.
type daemon struct {
	bin    string
	listen string // the API, host:port
	health string // /healthz, /readyz, /metrics, host:port
	args   []string
	log    string

	mu     sync.Mutex
	p      *testproc.Process
	starts int
}

func newDaemon(bin string, c *spire.Cluster) (*daemon, error) {
	ports, err := spire.FreePorts(2) // distinct: the API and the health listener
	if err != nil {
		return nil, err
	}
	d := &daemon{
		bin:    filepath.Join(bin, "tetherd"),
		listen: "127.0.0.1:" + strconv.Itoa(ports[0]),
		health: "127.0.0.1:" + strconv.Itoa(ports[1]),
		log:    filepath.Join(c.Dir(), "tetherd.log"),
	}
	d.args = []string{
		"--listen", d.listen,
		"--health-listen", d.health,
		"--workload-api", c.WorkloadAPIAddr(),
		"--admin", adminPattern,
		"--log-level", "debug",
		"--log-format", "text",
	}
	return d, nil
}

// start starts tetherd and waits until /readyz answers 200.
func (d *daemon) start(ctx context.Context) error {
	d.mu.Lock()
	if d.p != nil && !d.p.Exited() {
		d.mu.Unlock()
		return errors.New("tetherd already running")
	}
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	d.starts++
	_, _ = fmt.Fprintf(f, "===== integration: tetherd start #%d at %s =====\n", d.starts, time.Now().Format(time.RFC3339Nano))
	p, err := testproc.Start(testproc.Config{
		Path: d.bin, Args: d.args, Log: f,
		Env: append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET="), // only --workload-api counts
	})
	_ = f.Close() // the child has its own copy
	if err != nil {
		d.mu.Unlock()
		return err
	}
	d.p = p
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return d.waitReady(ctx)
}

// waitReady polls /readyz until 200; it gives up at once if tetherd exits.
func (d *daemon) waitReady(ctx context.Context) error {
	p := d.proc()
	if p == nil {
		return errors.New("tetherd not ready: never started")
	}
	if _, err := p.WaitHTTP(ctx, "http://"+d.health+"/readyz", http.StatusOK); err != nil {
		return fmt.Errorf("tetherd not ready (%s): %w", d.exitInfo(), err)
	}
	return nil
}

func (d *daemon) proc() *testproc.Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.p
}

func (d *daemon) exitInfo() string {
	p := d.proc()
	if p == nil {
		return "never started"
	}
	if !p.Exited() {
		return "running"
	}
	return fmt.Sprintf("exit code %d (%v)", p.ExitCode(), p.WaitErr())
}

// running reports whether tetherd is running.
func (d *daemon) running() bool {
	p := d.proc()
	return p != nil && !p.Exited()
}

// pid is tetherd's process ID, 0 when it is not running.
func (d *daemon) pid() int {
	if p := d.proc(); p != nil && !p.Exited() {
		return p.PID()
	}
	return 0
}

// readyz returns the status of GET /readyz.
func (d *daemon) readyz(ctx context.Context) (int, error) {
	return d.healthGet(ctx, "/readyz")
}

func (d *daemon) healthGet(ctx context.Context, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.health+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// stop sends SIGTERM and waits for tetherd to exit; it returns the exit code
// (the contract says 0).
func (d *daemon) stop() (int, error) {
	p := d.proc()
	if p == nil {
		return -1, errors.New("tetherd never started")
	}
	if err := p.Stop(20 * time.Second); err != nil {
		return -1, err
	}
	return p.ExitCode(), nil
}

// stopForGood stops tetherd at the end of the run; under -race it also fails
// if the race detector reported anything in tetherd.
func (d *daemon) stopForGood() error {
	var errs []error
	if d.running() {
		if _, err := d.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if b, err := os.ReadFile(d.log); err == nil {
		if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
			report := b[i:]
			if len(report) > 8<<10 {
				report = report[:8<<10]
			}
			errs = append(errs, fmt.Errorf("the race detector reported a data race in tetherd:\n%s", report))
		}
	}
	return errors.Join(errs...)
}
