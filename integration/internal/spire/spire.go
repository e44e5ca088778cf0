package spire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetherproject/tether/integration/internal/wait"
	"github.com/tetherproject/tether/internal/testproc"
)

// Version is the SPIRE release the suite is measured against.
const Version = "1.13.3"

// DefaultBinDir is where scripts/spire-build puts the binaries:
// $TETHER_SPIRE_BIN, else ${XDG_CACHE_HOME:-$HOME/.cache}/tether-build/spire-1.13.3/bin.
func DefaultBinDir() string {
	if d := os.Getenv("TETHER_SPIRE_BIN"); d != "" {
		return d
	}
	return testproc.CacheDir("spire-"+Version, "bin")
}

// MissingBinaries names the SPIRE binaries not found (or not executable) in
// binDir; empty when both are there.
func MissingBinaries(binDir string) []string {
	var missing []string
	for _, name := range []string{"spire-server", "spire-agent"} {
		fi, err := os.Stat(filepath.Join(binDir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Join(binDir, name))
		}
	}
	return missing
}

// Config describes the cluster to start.
type Config struct {
	// BinDir holds spire-server and spire-agent; DefaultBinDir() if empty.
	BinDir string
	// TrustDomain is the trust domain name; "example.org" if empty.
	TrustDomain string
	// Dir is the folder for configuration, data, sockets and logs. It must be
	// short (socket paths). If empty, a new folder /tmp/tthr-* is made and
	// removed by Close.
	Dir string
	// LogLevel is SPIRE's log level; "INFO" if empty.
	LogLevel string
}

// Cluster is a running SPIRE server and agent. Its methods are safe for
// concurrent use.
type Cluster struct {
	binDir      string
	dir         string
	ownDir      bool
	trustDomain string
	logLevel    string
	serverPort  int
	joinToken   string // single use: for the agent's first start only

	mu     sync.Mutex
	server *testproc.Process
	agent  *testproc.Process
}

// Entry is a registration entry.
type Entry struct {
	// ID is set by CreateEntry.
	ID string
	// SPIFFEID is the identity issued to matching workloads.
	SPIFFEID string
	// ParentID defaults to the agent's SPIFFE ID (AgentID).
	ParentID string
	// Selectors, e.g. "unix:uid:1001".
	Selectors []string
	// X509SVIDTTL is the X509-SVID lifetime; zero means SPIRE's default (1h).
	X509SVIDTTL time.Duration
	// Hint disambiguates entries matching the same workload.
	Hint string
}

// Start starts a SPIRE server, waits until it is healthy, and prepares the
// agent's bootstrap bundle and join token. Register entries (CreateEntry),
// then StartAgent: entries that exist before the agent's first sync are
// served at once. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	c := &Cluster{
		binDir:      cfg.BinDir,
		dir:         cfg.Dir,
		trustDomain: cfg.TrustDomain,
		logLevel:    cfg.LogLevel,
	}
	if c.binDir == "" {
		c.binDir = DefaultBinDir()
	}
	if m := MissingBinaries(c.binDir); len(m) > 0 {
		return nil, fmt.Errorf("spire: missing %s (run scripts/spire-build)", strings.Join(m, ", "))
	}
	if c.trustDomain == "" {
		c.trustDomain = "example.org"
	}
	if c.logLevel == "" {
		c.logLevel = "INFO"
	}
	if c.dir == "" {
		removeStale()
		d, err := os.MkdirTemp("/tmp", dirPrefix)
		if err != nil {
			return nil, fmt.Errorf("spire: %w", err)
		}
		c.dir, c.ownDir = d, true
		// Mark the folder as ours, for removeStale in later runs.
		if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return nil, fmt.Errorf("spire: %w", err)
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if err := c.layout(); err != nil {
		return nil, err
	}
	if c.serverPort, err = FreePort(); err != nil {
		return nil, err
	}
	if err := c.writeConfigs(); err != nil {
		return nil, err
	}
	if err := c.startServer(ctx); err != nil {
		return nil, err
	}
	bundle, err := c.serverCmd(ctx, "bundle", "show", "-format", "pem")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "bootstrap.pem"), bundle, 0o644); err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	out, err := c.serverCmd(ctx, "token", "generate", "-spiffeID", c.AgentID())
	if err != nil {
		return nil, err
	}
	// "Token: 0b5e…"
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		return nil, fmt.Errorf("spire: unexpected token generate output %q", out)
	}
	c.joinToken = fields[1]
	return c, nil
}

// Dir is the cluster's folder.
func (c *Cluster) Dir() string { return c.dir }

// TrustDomain is the trust domain name, e.g. "example.org".
func (c *Cluster) TrustDomain() string { return c.trustDomain }

// AgentID is the agent's SPIFFE ID, the parent of entries by default.
func (c *Cluster) AgentID() string { return "spiffe://" + c.trustDomain + "/agent" }

// SocketPath is the agent's Workload API socket.
func (c *Cluster) SocketPath() string { return filepath.Join(c.dir, "agent", "public", "api.sock") }

// WorkloadAPIAddr is the Workload API address in the form go-spiffe and
// tetherd's --workload-api take: unix:///path.
func (c *Cluster) WorkloadAPIAddr() string { return "unix://" + c.SocketPath() }

// ServerLog and AgentLog are the SPIRE log files.
func (c *Cluster) ServerLog() string { return filepath.Join(c.dir, "server", "server.log") }

// AgentLog is the agent's log file (kept across agent restarts).
func (c *Cluster) AgentLog() string { return filepath.Join(c.dir, "agent", "agent.log") }

func (c *Cluster) serverSocket() string { return filepath.Join(c.dir, "server", "api.sock") }

func (c *Cluster) layout() error {
	// The cluster folder and the agent's public folder must be reachable by
	// the workload users; the server's and the agent's data stay root's.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{c.dir, 0o755},
		{filepath.Join(c.dir, "server"), 0o700},
		{filepath.Join(c.dir, "server", "data"), 0o700},
		{filepath.Join(c.dir, "agent"), 0o755},
		{filepath.Join(c.dir, "agent", "data"), 0o700},
		{filepath.Join(c.dir, "agent", "public"), 0o755},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("spire: %w", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("spire: %w", err)
		}
	}
	return nil
}

func (c *Cluster) writeConfigs() error {
	d := c.dir
	server := fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = %q
    log_file = %q
    # Entries reach agents from the server's entry cache, reloaded every 5s
    # by default: 1s makes new and updated entries show up within a second
    # or two.
    experimental {
        cache_reload_interval = "1s"
    }
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = %q
        }
    }
}
`, c.serverPort, c.serverSocket(), c.trustDomain, filepath.Join(d, "server", "data"), c.logLevel,
		c.ServerLog(), filepath.Join(d, "server", "data", "datastore.sqlite3"),
		filepath.Join(d, "server", "data", "keys.json"))
	agent := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = %q
    log_file = %q
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_domain = %q
    trust_bundle_path = %q
    experimental {
        sync_interval = "1s"
    }
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = %q
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`, filepath.Join(d, "agent", "data"), c.logLevel, c.AgentLog(), c.serverPort, c.SocketPath(),
		c.trustDomain, filepath.Join(d, "bootstrap.pem"), filepath.Join(d, "agent", "data"))
	if err := os.WriteFile(filepath.Join(d, "server", "server.conf"), []byte(server), 0o600); err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d, "agent", "agent.conf"), []byte(agent), 0o600); err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	return nil
}

func (c *Cluster) startServer(ctx context.Context) error {
	p, err := c.startLogged("spire-server", c.ServerLog(), "run", "-config", filepath.Join(c.dir, "server", "server.conf"))
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	c.mu.Lock()
	c.server = p
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = wait.Until(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if p.Exited() {
			return fmt.Errorf("spire-server exited: %w", exitErr(p.WaitErr()))
		}
		_, err := c.serverCmd(ctx, "healthcheck")
		return err
	})
	if err != nil {
		return fmt.Errorf("spire: server not healthy: %w", err)
	}
	return nil
}

// startLogged starts the SPIRE binary bin with its standard output and error
// appended to logPath, the file SPIRE also logs to (its own output is only
// what it says before it has read its configuration, or a panic).
func (c *Cluster) startLogged(bin, logPath string, args ...string) (*testproc.Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	defer func() { _ = f.Close() }() // the child has its own copy
	return testproc.Start(testproc.Config{Path: filepath.Join(c.binDir, bin), Args: args, Log: f})
}

func (c *Cluster) startAgent(ctx context.Context, joinToken string) error {
	args := []string{"run", "-config", filepath.Join(c.dir, "agent", "agent.conf")}
	if joinToken != "" {
		args = append(args, "-joinToken", joinToken)
	}
	p, err := c.startLogged("spire-agent", c.AgentLog(), args...)
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	c.mu.Lock()
	c.agent = p
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = wait.Until(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if p.Exited() {
			return fmt.Errorf("spire-agent exited: %w", exitErr(p.WaitErr()))
		}
		_, err := c.run(ctx, "spire-agent", "healthcheck", "-socketPath", c.SocketPath())
		return err
	})
	if err != nil {
		return fmt.Errorf("spire: agent not healthy: %w", err)
	}
	return nil
}

// KillAgent kills the agent with SIGKILL (no graceful shutdown, as in a
// crash) and waits for it to exit. Workloads keep the SVIDs they hold.
func (c *Cluster) KillAgent() error {
	c.mu.Lock()
	p := c.agent
	c.mu.Unlock()
	if p == nil {
		return errors.New("spire: no agent")
	}
	return p.Kill()
}

// StartAgent starts the agent and waits until its Workload API is healthy.
// The first start attests the node with the join token; later ones (after
// KillAgent) reuse the node SVID kept in the agent's data folder, as a
// restarted agent does.
func (c *Cluster) StartAgent(ctx context.Context) error {
	c.mu.Lock()
	p, token := c.agent, c.joinToken
	if p != nil && !p.Exited() {
		c.mu.Unlock()
		return errors.New("spire: agent already running")
	}
	c.joinToken = ""
	c.mu.Unlock()
	return c.startAgent(ctx, token)
}

// AgentPID is the running agent's process ID, 0 if none.
func (c *Cluster) AgentPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agent == nil || c.agent.Exited() {
		return 0
	}
	return c.agent.PID()
}

// CreateEntry registers e and returns it with its ID.
func (c *Cluster) CreateEntry(ctx context.Context, e Entry) (Entry, error) {
	if e.ParentID == "" {
		e.ParentID = c.AgentID()
	}
	args := append([]string{"entry", "create"}, entryArgs(e)...)
	out, err := c.serverCmd(ctx, append(args, "-output", "json")...)
	if err != nil {
		return e, err
	}
	id, err := entryIDFromJSON(out)
	if err != nil {
		return e, fmt.Errorf("spire: entry create %s: %w", e.SPIFFEID, err)
	}
	e.ID = id
	return e, nil
}

// UpdateEntry replaces the entry with e.ID by e, e.g. to change its
// X509SVIDTTL. Any update makes the agent issue a new SVID to the matching
// workloads within one sync interval, whatever their SVID's remaining
// lifetime: a rotation on demand.
func (c *Cluster) UpdateEntry(ctx context.Context, e Entry) error {
	if e.ID == "" {
		return errors.New("spire: entry update: no entry ID")
	}
	if e.ParentID == "" {
		e.ParentID = c.AgentID()
	}
	args := append([]string{"entry", "update", "-entryID", e.ID}, entryArgs(e)...)
	out, err := c.serverCmd(ctx, append(args, "-output", "json")...)
	if err != nil {
		return err
	}
	if _, err := entryIDFromJSON(out); err != nil {
		return fmt.Errorf("spire: entry update %s: %w", e.SPIFFEID, err)
	}
	return nil
}

// DeleteEntry removes the entry with ID id: the agent stops issuing its
// SVID (a workload matching no other entry is then answered
// PermissionDenied) within one sync interval.
func (c *Cluster) DeleteEntry(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("spire: entry delete: no entry ID")
	}
	_, err := c.serverCmd(ctx, "entry", "delete", "-entryID", id)
	return err
}

func entryArgs(e Entry) []string {
	args := []string{"-parentID", e.ParentID, "-spiffeID", e.SPIFFEID}
	for _, s := range e.Selectors {
		args = append(args, "-selector", s)
	}
	if e.X509SVIDTTL > 0 {
		args = append(args, "-x509SVIDTTL", strconv.Itoa(int(e.X509SVIDTTL/time.Second)))
	}
	if e.Hint != "" {
		args = append(args, "-hint", e.Hint)
	}
	return args
}

// entryIDFromJSON reads the entry ID from the JSON of entry create/update:
// {"results":[{"status":{"code":0,"message":"OK"},"entry":{"id":"…",…}}]}.
func entryIDFromJSON(out []byte) (string, error) {
	var resp struct {
		Results []struct {
			Status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
			Entry struct {
				ID string `json:"id"`
			} `json:"entry"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return "", fmt.Errorf("unexpected output %q: %w", out, err)
	}
	if len(resp.Results) != 1 {
		return "", fmt.Errorf("unexpected output %q", out)
	}
	r := resp.Results[0]
	if r.Status.Code != 0 {
		return "", fmt.Errorf("status %d: %s", r.Status.Code, r.Status.Message)
	}
	if r.Entry.ID == "" {
		return "", fmt.Errorf("no entry ID in %q", out)
	}
	return r.Entry.ID, nil
}

// WaitSVID waits until the Workload API serves an X509-SVID to the calling
// process (root in the suite), i.e. until the agent has synced its entries.
func (c *Cluster) WaitSVID(ctx context.Context) error {
	err := wait.Until(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		_, err := c.run(ctx, "spire-agent", "api", "fetch", "x509", "-silent",
			"-socketPath", c.SocketPath(), "-timeout", "2s")
		return err
	})
	if err != nil {
		return fmt.Errorf("spire: no X509-SVID for uid %d: %w", os.Getuid(), err)
	}
	return nil
}

func (c *Cluster) serverCmd(ctx context.Context, args ...string) ([]byte, error) {
	return c.run(ctx, "spire-server", append(args, "-socketPath", c.serverSocket())...)
}

// run runs a short SPIRE CLI command and returns its standard output.
func (c *Cluster) run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err := testproc.Start(testproc.Config{Path: filepath.Join(c.binDir, bin), Args: args})
	if err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	if _, err = p.WaitExit(ctx); err != nil {
		err = errors.Join(err, p.Kill())
	} else {
		err = p.WaitErr()
	}
	if err != nil {
		return nil, fmt.Errorf("spire: %s %s: %w: %s", bin, strings.Join(args[:min(2, len(args))], " "),
			err, strings.TrimSpace(p.Stderr()+p.Stdout()))
	}
	return []byte(p.Stdout()), nil
}

// Close stops the agent and the server (SIGTERM, then SIGKILL after a grace
// period), waits for both, and removes the folder if Start made it. It is
// safe to call twice.
func (c *Cluster) Close() error {
	c.mu.Lock()
	agent, server := c.agent, c.server
	c.mu.Unlock()
	var errs []error
	if agent != nil {
		errs = append(errs, agent.Stop(5*time.Second))
	}
	if server != nil {
		errs = append(errs, server.Stop(10*time.Second))
	}
	if c.ownDir && os.Getenv("TETHER_IT_KEEP") == "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

const (
	dirPrefix = "tthr-"
	ownerFile = "owner.pid"
)

// removeStale removes the folders that earlier runs made and could not
// remove (killed by a test timeout): those whose owner process is gone. Their
// SPIRE processes died with the run (parent-death signal).
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join("/tmp", dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or not yet written
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d) // best effort: it is only litter
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. All n are bound at once before any is released: binding port
// 0 once per port can hand out again a port released a moment before.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("spire: free port: %w", err)
		}
		defer func() { _ = l.Close() }()
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			return nil, fmt.Errorf("spire: free port: %v is not a TCP address", l.Addr())
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}

// exitErr is err, or "exit status 0" for a process that ended without error.
func exitErr(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}
