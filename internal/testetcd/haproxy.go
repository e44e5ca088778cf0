package testetcd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/testproc"
)

// debianHAProxy is where Debian's package puts haproxy: /usr/sbin, which is
// not on every user's PATH.
const debianHAProxy = "/usr/sbin/haproxy"

// HAProxy is a running haproxy balancing TCP connections over backends.
type HAProxy struct {
	addr string
	cfg  string
	proc *testproc.Process
}

// HAProxyBin is the haproxy found on the PATH, else Debian's; empty if
// neither is there.
func HAProxyBin() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if fi, err := os.Stat(debianHAProxy); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return debianHAProxy
	}
	return ""
}

// StartHAProxy starts haproxy on a free loopback port in front of
// backends (host:port addresses), in TCP mode: each client connection is
// relayed to one backend, round robin, bytes untouched, so TLS passes
// through and ends at the backend, which sees the client's own
// certificate. A connection refused by a backend (a killed one) is retried
// on the next. It returns once haproxy listens, skips tb (fails it with
// CI=true) when haproxy is missing or under -short, and stops haproxy by its
// process ID when the test ends, logging its output if the test failed.
func StartHAProxy(tb testing.TB, backends ...string) *HAProxy {
	tb.Helper()
	if testing.Short() {
		cannotRun(tb, "haproxy: not with -short")
	}
	bin := HAProxyBin()
	if bin == "" {
		cannotRun(tb, "haproxy: not on the PATH nor at "+debianHAProxy+" (scripts/test installs Debian's haproxy; or apt-get install haproxy)")
	}
	if len(backends) == 0 {
		tb.Fatal("testetcd: haproxy needs at least one backend")
	}
	h := &HAProxy{addr: freeAddr(tb), cfg: filepath.Join(tb.TempDir(), "haproxy.cfg")}
	monitor := freeAddr(tb)
	if err := os.WriteFile(h.cfg, []byte(haproxyConfig(h.addr, monitor, backends)), 0o600); err != nil {
		tb.Fatalf("testetcd: %v", err)
	}
	// -db: stay in the foreground, logging to stderr, so the harness owns
	// the process and its output.
	h.proc = testproc.StartT(tb, testproc.Config{Name: "haproxy", Path: bin, Args: []string{"-f", h.cfg, "-db"}})
	// haproxy binds every listener before it serves any, so the monitor
	// answering means the balancer listens too.
	h.proc.HTTP(tb, "http://"+monitor+"/ready", 200, 30*time.Second)
	return h
}

// haproxyConfig is the configuration of a TCP balancer listening on addr
// in front of backends, with an HTTP monitor on monitor.
func haproxyConfig(addr, monitor string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread 1
    log stderr format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    # A backend that refuses the connection (killed) is left for the next.
    retries 3
    option redispatch 1

frontend monitor
    mode http
    bind %s
    monitor-uri /ready

frontend balancer
    bind %s
    default_backend replicas

backend replicas
    balance roundrobin
`, monitor, addr)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server b%d %s\n", i, be)
	}
	return b.String()
}

// Addr is the address clients connect to: 127.0.0.1:PORT.
func (h *HAProxy) Addr() string { return h.addr }

// ConfigFile is haproxy's configuration file.
func (h *HAProxy) ConfigFile() string { return h.cfg }

// PID is haproxy's process ID.
func (h *HAProxy) PID() int { return h.proc.PID() }

// Stop stops haproxy (SIGTERM, then SIGKILL) and waits for it to exit.
func (h *HAProxy) Stop(tb testing.TB) {
	tb.Helper()
	if err := h.proc.Stop(5 * time.Second); err != nil {
		tb.Fatal(err)
	}
}

// Log is what haproxy has written so far: its warnings and one line per
// relayed connection, naming the backend that took it.
func (h *HAProxy) Log() string { return h.proc.Stdout() + h.proc.Stderr() }
