package integration

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherproject/tether/integration/internal/probe"
	"github.com/tetherproject/tether/integration/internal/spire"
	"github.com/tetherproject/tether/internal/testproc"
)

// The suite's trust domain and identities.
const (
	trustDomain  = "example.org"
	tetherdID    = "spiffe://example.org/tetherd"
	adminPattern = "spiffe://example.org/admin/*"

	// tetherdSVIDTTL is the lifetime of tetherd's X509-SVIDs: short, so that
	// tetherd rotates (at about half-life) while the suite runs, and so that
	// an agent outage lets its SVID expire within seconds.
	tetherdSVIDTTL = 20 * time.Second
	// adminSVIDTTL is alice's SVID lifetime while her rotation is tested.
	adminSVIDTTL = 20 * time.Second
)

// identity is a workload of the suite: a Linux user and its registration entry.
type identity struct {
	name     string // short name in the tests: "alice"
	user     string // Linux user: "tether-alice"
	spiffeID string
	uid, gid int
	entry    spire.Entry
	// dir is a folder (0700) owned by the user, for token files.
	dir string
}

// workloads are the suite's probes' identities.
var workloads = []struct{ name, user, path string }{
	{"alice", "tether-alice", "/admin/alice"},
	{"bob", "tether-bob", "/admin/bob"},
	{"web", "tether-web", "/workload/web"},
}

// suite is what TestMain sets up once for all tests.
type suite struct {
	spire    *spire.Cluster
	bin      string // folder with tetherd and probe
	tetherd  *daemon
	tEntry   spire.Entry // tetherd's entry
	ids      map[string]*identity
	probes   map[string]*probe.Probe
	probeCfg probe.Config
}

var (
	// why the suite cannot run here (not root, no SPIRE binaries)
	skipReason string

	// The suite is set up by the first test that needs it, so that a run
	// selecting no test (go test -run '^$' -bench .) starts nothing.
	setupOnce sync.Once
	st        *suite // when setup succeeded
	setupErr  error  // why setup failed
)

func TestMain(m *testing.M) {
	flag.Parse()
	skipReason = preflight()
	code := m.Run()
	if st != nil {
		if err := st.close(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: teardown:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// preflight says why the suite cannot run on this machine, or "".
func preflight() string {
	if testing.Short() {
		return "integration suite not run in -short mode"
	}
	if os.Geteuid() != 0 {
		return "integration suite needs root (it creates Linux users and runs probes as them with runuser)"
	}
	for _, tool := range []string{"runuser", "useradd", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("integration suite needs %s in PATH", tool)
		}
	}
	if missing := spire.MissingBinaries(spire.DefaultBinDir()); len(missing) > 0 {
		return fmt.Sprintf("SPIRE %s binaries missing (%s): run scripts/spire-build",
			spire.Version, strings.Join(missing, ", "))
	}
	return ""
}

// need returns the suite, or ends the test: skipped when the machine cannot
// run the suite, failed if CI=true (CI must never skip silently) or setup
// failed. On failure the test's log gets the tails of the SPIRE, tetherd and
// probe logs. It also brings the suite back to health for this test: the
// agent and tetherd running, tetherd ready.
func need(t *testing.T) *suite {
	t.Helper()
	if skipReason != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the integration suite cannot run: %s", skipReason)
		}
		t.Skip(skipReason)
	}
	setupOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		st, setupErr = setup(ctx)
		if setupErr == nil {
			t.Logf("SPIRE %s, tetherd and probes up in %s (folder %s)",
				spire.Version, time.Since(start).Round(time.Millisecond), st.spire.Dir())
		}
	})
	if setupErr != nil {
		t.Fatalf("suite setup failed: %v", setupErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var b bytes.Buffer
			st.dumpLogs(&b)
			t.Log(b.String())
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if st.spire.AgentPID() == 0 {
		if err := st.spire.StartAgent(ctx); err != nil {
			t.Fatalf("restarting the agent a previous test left down: %v", err)
		}
	}
	if !st.tetherd.running() {
		if err := st.tetherd.start(ctx); err != nil {
			t.Fatalf("starting tetherd a previous test left down: %v", err)
		}
	}
	if err := st.tetherd.waitReady(ctx); err != nil {
		t.Fatalf("tetherd not ready: %v", err)
	}
	return st
}

// setup starts everything; on error it dumps the logs, stops what it started
// and returns a nil suite.
func setup(ctx context.Context) (_ *suite, err error) {
	s := &suite{ids: map[string]*identity{}, probes: map[string]*probe.Probe{}}
	c, err := spire.Start(ctx, spire.Config{TrustDomain: trustDomain})
	if err != nil {
		return nil, err
	}
	s.spire = c
	defer func() {
		if err != nil {
			s.dumpLogs(os.Stderr)
			err = errors.Join(err, s.close())
		}
	}()

	// Build tetherd and the probe while registering the workloads.
	s.bin = filepath.Join(c.Dir(), "bin")
	buildErr := make(chan error, 1)
	go func() { buildErr <- build(ctx, s.bin) }()

	if err := s.register(ctx); err != nil {
		return nil, errors.Join(err, <-buildErr)
	}
	if err := c.StartAgent(ctx); err != nil {
		return nil, errors.Join(err, <-buildErr)
	}
	if err := <-buildErr; err != nil {
		return nil, err
	}
	// tetherd's entry has reached the agent once root gets an SVID.
	if err := c.WaitSVID(ctx); err != nil {
		return nil, err
	}
	s.tetherd, err = newDaemon(s.bin, c)
	if err != nil {
		return nil, err
	}
	if err := s.tetherd.start(ctx); err != nil {
		return nil, err
	}
	s.probeCfg = probe.Config{
		Bin:         filepath.Join(s.bin, "probe"),
		WorkloadAPI: c.WorkloadAPIAddr(),
		Server:      "https://" + s.tetherd.listen,
		ServerID:    tetherdID,
	}
	// Start the probes side by side: each waits for its first SVID.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for name, id := range s.ids {
		wg.Go(func() {
			cfg := s.probeCfg
			cfg.User = id.user
			logf, err := os.OpenFile(filepath.Join(c.Dir(), "probe-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err == nil {
				defer func() { _ = logf.Close() }() // the probe has its own copy
				cfg.Log = logf
			}
			p, err := probe.Start(ctx, cfg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			s.probes[name] = p
			if got := p.Ready().SVID.SPIFFEID; got != id.spiffeID {
				errs = append(errs, fmt.Errorf("probe as %s got SVID %s, want %s", id.user, got, id.spiffeID))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// register creates the users and the registration entries.
func (s *suite) register(ctx context.Context) error {
	c := s.spire
	var err error
	s.tEntry, err = c.CreateEntry(ctx, spire.Entry{
		SPIFFEID:    tetherdID,
		Selectors:   []string{spire.UIDSelector(os.Getuid())},
		X509SVIDTTL: tetherdSVIDTTL,
	})
	if err != nil {
		return err
	}
	users := filepath.Join(c.Dir(), "users")
	if err := os.Mkdir(users, 0o755); err != nil {
		return fmt.Errorf("users folder: %w", err)
	}
	for _, w := range workloads {
		id := &identity{name: w.name, user: w.user, spiffeID: "spiffe://" + trustDomain + w.path}
		if id.uid, id.gid, err = spire.EnsureUser(w.user); err != nil {
			return err
		}
		id.dir = filepath.Join(users, w.name)
		if err := os.Mkdir(id.dir, 0o700); err != nil {
			return fmt.Errorf("token folder: %w", err)
		}
		if err := os.Chown(id.dir, id.uid, id.gid); err != nil {
			return fmt.Errorf("token folder: %w", err)
		}
		if id.entry, err = c.CreateEntry(ctx, spire.Entry{
			SPIFFEID:  id.spiffeID,
			Selectors: []string{spire.UIDSelector(id.uid)},
		}); err != nil {
			return err
		}
		s.ids[w.name] = id
	}
	return nil
}

// build compiles tetherd, the tether CLI and the probe into dir (0755: the
// probe runs as the workload users). Under -race, they are built with -race.
// With TETHER_IT_TETHERD set, that tetherd binary is tested instead of a
// fresh build (e.g. a release build).
func build(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pkgs := []string{"github.com/tetherproject/tether/integration/internal/cmd/probe", "github.com/tetherproject/tether/cmd/tether"}
	if bin := os.Getenv("TETHER_IT_TETHERD"); bin != "" {
		b, err := os.ReadFile(bin)
		if err != nil {
			return fmt.Errorf("TETHER_IT_TETHERD: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tetherd"), b, 0o755); err != nil {
			return err
		}
	} else {
		pkgs = append(pkgs, "github.com/tetherproject/tether/cmd/tetherd")
	}
	start := time.Now()
	if err := testproc.Build(ctx, dir, testproc.Race, pkgs...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "integration: built tetherd and probe in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// close stops the probes, tetherd, the agent and the server, by PID.
func (s *suite) close() error {
	var errs []error
	for _, p := range s.probes {
		errs = append(errs, p.Close())
	}
	if s.tetherd != nil {
		errs = append(errs, s.tetherd.stopForGood())
	}
	if s.spire != nil {
		errs = append(errs, s.spire.Close())
	}
	return errors.Join(errs...)
}

// dumpLogs writes the tails of the logs worth reading after a failure:
// tetherd's, the SPIRE agent's and server's, the probes' standard error.
// None of them holds a token: tetherd never logs one, the probes never print
// one.
func (s *suite) dumpLogs(w io.Writer) {
	if s == nil || s.spire == nil {
		return
	}
	logs := []struct {
		path  string
		lines int
	}{
		{filepath.Join(s.spire.Dir(), "tetherd.log"), 80},
		{s.spire.AgentLog(), 40},
		{s.spire.ServerLog(), 20},
	}
	for _, wl := range workloads {
		logs = append(logs, struct {
			path  string
			lines int
		}{filepath.Join(s.spire.Dir(), "probe-"+wl.name+".log"), 20})
	}
	for _, l := range logs {
		b, err := os.ReadFile(l.path)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > l.lines {
			lines = lines[len(lines)-l.lines:]
		}
		if len(lines) == 1 && lines[0] == "" {
			continue
		}
		_, _ = fmt.Fprintf(w, "----- last %d lines of %s -----\n%s\n", len(lines), l.path, strings.Join(lines, "\n"))
	}
}
