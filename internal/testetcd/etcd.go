package testetcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
)

// Version is the etcd release scripts/etcd-build builds.
const Version = "3.7.3"

const (
	// startWithin bounds a cluster's start, from the first process to every
	// member healthy: a member starts in about a second, slower on two busy
	// cores under -race.
	startWithin = 60 * time.Second
	// stopGrace is how long StopMember lets a member shut down on SIGTERM.
	stopGrace = 10 * time.Second
	// pollEvery is how often a wait looks again.
	pollEvery = 50 * time.Millisecond
	// logTail is how many lines of each member's log a failed test shows.
	logTail = 60
)

// DefaultBin is where scripts/etcd-build puts etcd: $TETHER_ETCD_BIN, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/tether-build/etcd-3.7.3/bin/etcd.
func DefaultBin() string {
	if p := os.Getenv("TETHER_ETCD_BIN"); p != "" {
		return p
	}
	return testproc.CacheDir("etcd-"+Version, "bin", "etcd")
}

// Config describes the cluster to start.
type Config struct {
	// Bin is the etcd binary; DefaultBin() if empty.
	Bin string
	// Members is the cluster's size; 3 if zero.
	Members int
	// CA is the trust domain whose bundle etcd trusts for clients and peers,
	// and which issues the members' SVIDs; a new CA for example.org if nil.
	// Hand it the CA that issues a test's tetherd SVIDs, so that tetherd's
	// own SVID is an etcd client certificate.
	CA *testpki.CA
}

// Cluster is a running etcd cluster. Its methods are safe for concurrent
// use, except that a test must not start and stop the same member at once.
type Cluster struct {
	tb      testing.TB
	bin     string
	ca      *testpki.CA
	dir     string
	bundle  string
	members []*member
	health  *http.Client

	mu sync.Mutex // guards each member's proc
}

type member struct {
	name       string
	clientURL  string
	peerURL    string
	dataDir    string
	log        string
	certs      testpki.Files
	initialArg string // --initial-cluster
	token      string // --initial-cluster-token
	proc       *testproc.Process
}

// Start starts a cluster and waits until every member is healthy. It skips
// tb (fails it with CI=true) when etcd is missing or under -short, and fails
// tb when the cluster does not come up in time, with the members' logs. The
// members are killed when the test ends.
func Start(tb testing.TB, cfg Config) *Cluster {
	tb.Helper()
	bin := cfg.Bin
	if bin == "" {
		bin = DefaultBin()
	}
	if testing.Short() {
		cannotRun(tb, "etcd cluster: not with -short")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		cannotRun(tb, fmt.Sprintf("etcd cluster: no etcd binary at %s (run scripts/etcd-build, or set TETHER_ETCD_BIN)", bin))
	}
	n := cfg.Members
	if n == 0 {
		n = 3
	}
	ca := cfg.CA
	if ca == nil {
		ca = testpki.NewCA(tb, "example.org")
	}
	// Made before the cleanup below is registered, so removed after it ran.
	dir := tb.TempDir()
	c := &Cluster{tb: tb, bin: bin, ca: ca, dir: dir}
	c.health = c.healthClient(tb)
	tb.Cleanup(c.cleanup)
	// A member's port is found free, then bound by etcd a moment later:
	// another process (the other test packages run meanwhile) may take it
	// in between. The cluster then starts again on new ports, in a new
	// folder.
	for try := 1; ; try++ {
		c.layout(tb, n, filepath.Join(dir, "try"+strconv.Itoa(try)))
		for i := range c.members {
			c.StartMember(tb, i)
		}
		if try == portTries || !c.lostPort(startWithin) {
			break
		}
		for i := range c.members {
			_ = c.proc(i).Kill()
		}
		tb.Logf("testetcd: a member's port was taken before it could bind it: starting again on new ports (try %d of %d)", try+1, portTries)
	}
	c.WaitHealthy(tb, startWithin)
	return c
}

// portTries bounds the starts of a cluster whose ports are taken meanwhile.
const portTries = 3

// layout makes the cluster's n members, each with free ports, its SVID and
// its folder under dir.
func (c *Cluster) layout(tb testing.TB, n int, dir string) {
	tb.Helper()
	loopback := net.IPv4(127, 0, 0, 1)
	initial := make([]string, n)
	token := "tether-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	members := make([]*member, 0, n)
	// Each address once: two binds to :0 a moment apart can be handed the
	// same port (the first was closed), and etcd refuses a cluster whose
	// members share a URL.
	used := map[string]bool{}
	distinct := func() string {
		for range 100 {
			if a := addrFor(tb); !used[a] {
				used[a] = true
				return a
			}
		}
		tb.Fatalf("testetcd: no %d distinct free ports", 2*n)
		return ""
	}
	for i := range n {
		name := "m" + strconv.Itoa(i)
		mdir := filepath.Join(dir, name)
		if err := os.MkdirAll(mdir, 0o700); err != nil {
			tb.Fatalf("testetcd: %v", err)
		}
		svid := c.ca.Issue(tb, "spiffe://"+c.ca.TD.Name()+"/etcd/"+name, testpki.WithIPs(loopback))
		m := &member{
			name:      name,
			clientURL: "https://" + distinct(),
			peerURL:   "https://" + distinct(),
			dataDir:   filepath.Join(mdir, "data"),
			log:       filepath.Join(mdir, "etcd.log"),
			certs:     c.ca.WriteFiles(tb, mdir, "member", svid),
			token:     token,
		}
		initial[i] = name + "=" + m.peerURL
		members = append(members, m)
	}
	for _, m := range members {
		m.initialArg = strings.Join(initial, ",")
	}
	c.mu.Lock()
	c.members = members
	c.mu.Unlock()
	c.bundle = members[0].certs.Bundle
}

// lostPort waits until every member is healthy or one has exited, and
// reports whether one exited because its port was taken.
func (c *Cluster) lostPort(within time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		healthy := 0
		for i, m := range c.members {
			if !c.Running(i) {
				log, _ := os.ReadFile(m.log)
				return strings.Contains(string(log), "address already in use")
			}
			if c.Health(ctx, i) == nil {
				healthy++
			}
		}
		if healthy == len(c.members) {
			return false
		}
		select {
		case <-ctx.Done():
			return false // WaitHealthy says why
		case <-tick.C:
		}
	}
}

// cannotRun skips tb with why, or fails it when CI=true.
func cannotRun(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(why + " (CI=true: a test that cannot run fails)")
	}
	tb.Skip(why)
}

// healthClient asks the members' /health over mTLS with an SVID of the
// harness's own, one connection a request so that none outlives the test.
func (c *Cluster) healthClient(tb testing.TB) *http.Client {
	tb.Helper()
	tr := &http.Transport{
		TLSClientConfig:   c.ClientTLS(c.ca.Issue(tb, "spiffe://"+c.ca.TD.Name()+"/testetcd/health")),
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// CA is the trust domain's CA: it issues client SVIDs etcd accepts.
func (c *Cluster) CA() *testpki.CA { return c.ca }

// BundleFile is the PEM file of the trust bundle etcd trusts
// (--trusted-ca-file, --peer-trusted-ca-file).
func (c *Cluster) BundleFile() string { return c.bundle }

// Size is the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Quorum is how many members must run for the cluster to serve writes and
// quorum reads: a majority. Killing Size()-Quorum() members is a member
// loss the cluster rides out; killing one more is a quorum loss.
func (c *Cluster) Quorum() int { return len(c.members)/2 + 1 }

// Endpoints are the members' client URLs (https://127.0.0.1:PORT), in
// member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL
	}
	return eps
}

// Endpoint is member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.members[i].clientURL }

// ClientTLS is a client TLS configuration for etcd: it presents s (no
// certificate if s is nil) and trusts the cluster's bundle (members are
// checked by their IP SAN, as any etcd client checks them). TLS 1.3, as the
// members require.
func (c *Cluster) ClientTLS(s *x509svid.SVID) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
	if s != nil {
		cfg.Certificates = []tls.Certificate{testpki.TLSCertificate(s)}
	}
	return cfg
}

// StartMember starts member i on its data folder: at the cluster's start
// the folder is empty and the member joins the initial cluster; later (after
// KillMember or StopMember) it resumes from its write-ahead log. It does not
// wait for health, which may need other members too (WaitHealthy does).
// It fails the test if the member is running or cannot be started.
func (c *Cluster) StartMember(tb testing.TB, i int) {
	tb.Helper()
	m := c.members[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.proc != nil && !m.proc.Exited() {
		tb.Fatalf("testetcd: member %s is already running (pid %d)", m.name, m.proc.PID())
	}
	f, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatalf("testetcd: %v", err)
	}
	defer func() { _ = f.Close() }() // the child has its own copy
	p, err := testproc.Start(testproc.Config{Name: "etcd " + m.name, Path: c.bin, Args: m.args(), Log: f})
	if err != nil {
		tb.Fatal(err)
	}
	m.proc = p
}

func (m *member) args() []string {
	return []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.initialArg,
		"--initial-cluster-token", m.token,
		"--initial-cluster-state", "new",
		// Clients: TLS 1.3 with an SVID of the trust domain, nothing else.
		"--cert-file", m.certs.Cert,
		"--key-file", m.certs.Key,
		"--client-cert-auth",
		"--trusted-ca-file", m.certs.Bundle,
		// Peers: the same, both ways.
		"--peer-cert-file", m.certs.Cert,
		"--peer-key-file", m.certs.Key,
		"--peer-client-cert-auth",
		"--peer-trusted-ca-file", m.certs.Bundle,
		"--tls-min-version", "TLS1.3",
		// A test's data dies with it; a killed process (not a lost machine)
		// loses nothing unsynced, so KillMember/StartMember still resume.
		"--unsafe-no-fsync",
		"--log-level", "info",
	}
}

// KillMember kills member i with SIGKILL, as a crash would, and waits for
// it to exit. Its data folder stays for StartMember.
func (c *Cluster) KillMember(tb testing.TB, i int) {
	tb.Helper()
	p := c.proc(i)
	if p == nil {
		tb.Fatalf("testetcd: member m%d was never started", i)
	}
	if err := p.Kill(); err != nil {
		tb.Fatal(err)
	}
}

// StopMember stops member i with SIGTERM (a clean shutdown; SIGKILL after
// a grace period) and waits for it to exit.
func (c *Cluster) StopMember(tb testing.TB, i int) {
	tb.Helper()
	p := c.proc(i)
	if p == nil {
		tb.Fatalf("testetcd: member m%d was never started", i)
	}
	if err := p.Stop(stopGrace); err != nil {
		tb.Fatal(err)
	}
}

// Running reports whether member i's process runs.
func (c *Cluster) Running(i int) bool {
	p := c.proc(i)
	return p != nil && !p.Exited()
}

// PID is member i's process ID, 0 if it does not run.
func (c *Cluster) PID(i int) int {
	p := c.proc(i)
	if p == nil || p.Exited() {
		return 0
	}
	return p.PID()
}

func (c *Cluster) proc(i int) *testproc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].proc
}

// Health asks member i's /health, which etcd answers healthy only when the
// member has a leader, no alarm, and a quorum read succeeds: an error says
// why not.
func (c *Cluster) Health(ctx context.Context, i int) error {
	m := c.members[i]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.clientURL+"/health", nil)
	if err != nil {
		return fmt.Errorf("testetcd: %w", err)
	}
	resp, err := c.health.Do(req)
	if err != nil {
		return fmt.Errorf("testetcd: %s /health: %w", m.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("testetcd: %s /health: %w", m.name, err)
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != http.StatusOK || h.Health != "true" {
		return fmt.Errorf("testetcd: %s /health: %d %s", m.name, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitHealthy waits until each member in members (every running member if
// none is named) is healthy, and fails the test, saying what each last
// answered, if one is not within the deadline or its process exits.
func (c *Cluster) WaitHealthy(tb testing.TB, within time.Duration, members ...int) {
	tb.Helper()
	if len(members) == 0 {
		for i := range c.members {
			if c.Running(i) {
				members = append(members, i)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last := make(map[int]error, len(members))
	for {
		for _, i := range members {
			if err, seen := last[i]; seen && err == nil {
				continue
			}
			if !c.Running(i) {
				tb.Fatalf("testetcd: member m%d is not running (%s)", i, c.exitState(i))
			}
			last[i] = c.Health(ctx, i)
		}
		var waiting []string
		for _, i := range members {
			if last[i] != nil {
				waiting = append(waiting, last[i].Error())
			}
		}
		if len(waiting) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("testetcd: not healthy within %s:\n%s", within, strings.Join(waiting, "\n"))
		case <-tick.C:
		}
	}
}

func (c *Cluster) exitState(i int) string {
	p := c.proc(i)
	if p == nil {
		return "never started"
	}
	return fmt.Sprintf("pid %d, exit code %d, %v", p.PID(), p.ExitCode(), p.WaitErr())
}

// cleanup kills every member (their data is thrown away with the test's
// folder) and, if the test failed, logs the end of each member's log.
func (c *Cluster) cleanup() {
	var errs []error
	for i := range c.members {
		if p := c.proc(i); p != nil {
			errs = append(errs, p.Kill())
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.tb.Error(err)
	}
	if c.tb.Failed() {
		for i, m := range c.members {
			c.tb.Logf("----- etcd %s (%s), last %d lines of %s -----\n%s", m.name, c.exitState(i), logTail, m.log, tail(m.log, logTail))
		}
	}
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path) //nolint:gosec // G304: a log file in the test's own folder
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// addrFor is how layout finds a member's address: freeAddr (a test takes
// it over to hand out a port that is in use).
var addrFor = freeAddr

// freeAddr returns a loopback address 127.0.0.1:PORT whose port was free a
// moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testetcd: free port: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
