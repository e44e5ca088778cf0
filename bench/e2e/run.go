package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// Names of the phases and sides, as the output lines give them.
const (
	phaseRequest = "request"
	phaseLogin   = "login"
)

func run(ctx context.Context, cfg config, out, log io.Writer) error {
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := newPKI(dir)
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, c := range procs {
			stopProcess(c)
		}
	}()

	td, err := startTetherd(ctx, cfg.tetherd, p, dir)
	if td != nil {
		procs = append(procs, td.cmd)
	}
	if err != nil {
		return err
	}
	base, baseCmd, err := startServer(ctx, p, kindBaseline, baselineID)
	if baseCmd != nil {
		procs = append(procs, baseCmd)
	}
	if err != nil {
		return err
	}
	// basetoken gets a baseline process of its own, so that every server
	// process is busy in one slice of each round and idle in the others,
	// as tetherd is: a process that served two slices a round would come
	// to its slices warmer.
	base2, base2Cmd, err := startServer(ctx, p, kindBaseline, baselineID)
	if base2Cmd != nil {
		procs = append(procs, base2Cmd)
	}
	if err != nil {
		return err
	}
	jwtp, jwtCmd, err := startServer(ctx, p, kindJWTPeer, jwtPeerID)
	if jwtCmd != nil {
		procs = append(procs, jwtCmd)
	}
	if err != nil {
		return err
	}

	bundles := x509bundle.NewSet()
	b, err := x509bundle.Load(trustDomain, p.bundle)
	if err != nil {
		return err
	}
	bundles.Add(b)
	src := &svid.StaticSource{SVID: p.admin, Bundles: bundles}
	clientTLS := func(server spiffeid.ID) *tls.Config {
		c := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(server))
		c.MinVersion = tls.VersionTLS13 // no ClientSessionCache: every handshake is a full one
		return c
	}

	tetherdLogin := &target{name: "tetherd", addr: td.addr, status: http.StatusCreated, pid: td.cmd.Process.Pid, tls: clientTLS(tetherdID),
		req: request("POST", api.PathSessions, td.addr)}
	token, err := loginOnce(ctx, tetherdLogin)
	if err != nil {
		return fmt.Errorf("tetherd login: %w", err)
	}
	jwtToken, err := p.jwtSVID()
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "e2e: tetherd %s (pid %d), baseline %s (pid %d), jwtpeer %s (pid %d); session token %d bytes, JWT-SVID %d bytes\n",
		td.addr, td.cmd.Process.Pid, base.addr, base.pid, jwtp.addr, jwtp.pid, len(token), len(jwtToken))

	phases := strings.Split(cfg.phases, ",")
	results := map[string]map[string][]slice{}
	if slices.Contains(phases, phaseRequest) {
		sides := []*target{
			{name: "tetherd", addr: td.addr, status: http.StatusOK, pid: td.cmd.Process.Pid, tls: clientTLS(tetherdID),
				req: request("GET", api.PathSessionsSelf, td.addr, "Authorization: Bearer "+token)},
			{name: "baseline", addr: base.addr, status: http.StatusOK, pid: base.pid, tls: clientTLS(baselineID),
				req: request("GET", api.PathSessionsSelf, base.addr)},
			{name: "jwtpeer", addr: jwtp.addr, status: http.StatusOK, pid: jwtp.pid, tls: clientTLS(jwtPeerID),
				req: request("GET", api.PathSessionsSelf, jwtp.addr, "Authorization: Bearer "+jwtToken)},
			// The baseline sent tetherd's very request, token included,
			// which it ignores: what carrying the token costs.
			{name: "basetoken", addr: base2.addr, status: http.StatusOK, pid: base2.pid, tls: clientTLS(baselineID),
				req: request("GET", api.PathSessionsSelf, base2.addr, "Authorization: Bearer "+token)},
		}
		stopPerf := startPerf(cfg.perfDir, "", sides, log)
		results[phaseRequest], err = phase(ctx, cfg, "BenchmarkE2ERequest", sides, true, out)
		stopPerf()
		if err != nil {
			return err
		}
	}
	if slices.Contains(phases, phaseLogin) {
		sides := []*target{tetherdLogin, {name: "baseline", addr: base.addr, status: http.StatusCreated, pid: base.pid, tls: clientTLS(baselineID),
			req: request("POST", api.PathSessions, base.addr)}}
		stopPerf := startPerf(cfg.perfDir, ".login", sides, log)
		results[phaseLogin], err = phase(ctx, cfg, "BenchmarkE2ELogin", sides, false, out)
		stopPerf()
		if err != nil {
			return err
		}
	}
	summary(log, results)
	return nil
}

// phase runs cfg.rounds rounds of one slice per side, the order of the
// sides turning each round, and prints each slice.
func phase(ctx context.Context, cfg config, name string, sides []*target, keepAlive bool, out io.Writer) (map[string][]slice, error) {
	pools := make([][]*client, len(sides))
	for i := range pools {
		pools[i] = make([]*client, cfg.conns)
	}
	defer func() {
		for _, pool := range pools {
			for _, c := range pool {
				if c != nil {
					c.close()
				}
			}
		}
	}()
	res := map[string][]slice{}
	for round := range cfg.rounds {
		for k := range sides {
			i := (k + round) % len(sides)
			t := sides[i]
			s, err := measure(ctx, t, cfg.conns, keepAlive, pools[i], cfg.warmup, cfg.slice, cfg.clkTck)
			if err != nil {
				return nil, fmt.Errorf("%s/%s, round %d: %w", name, t.name, round+1, err)
			}
			if s.answers == 0 {
				return nil, fmt.Errorf("%s/%s, round %d: no answer in %s", name, t.name, round+1, cfg.slice)
			}
			res[t.name] = append(res[t.name], s)
			n := float64(s.answers)
			fmt.Fprintf(out, "%s/%s\t%d\t%.0f ns/op\t%.0f server-cpu-ns/op\t%.0f client-cpu-ns/op\t%d round\n", name, t.name, s.answers,
				float64(s.took)/n, float64(s.serverCPU)/n, float64(s.clientCPU)/n, round+1)
		}
	}
	return res, nil
}

// summary prints each phase's ratios against its baseline: throughput
// (median of the rounds' ratios, and their range) and server CPU per
// answer (pooled over the rounds, and the median of the rounds' ratios).
func summary(w io.Writer, results map[string]map[string][]slice) {
	for _, ph := range []string{phaseRequest, phaseLogin} {
		res := results[ph]
		base := res["baseline"]
		if base == nil {
			continue
		}
		for _, side := range []string{"tetherd", "jwtpeer", "basetoken"} {
			s := res[side]
			if s == nil {
				continue
			}
			var thr, cpu []float64
			var sCPU, sN, bCPU, bN float64
			for i := range s {
				thr = append(thr, perAnswer(base[i].took, base[i].answers)/perAnswer(s[i].took, s[i].answers))
				cpu = append(cpu, perAnswer(base[i].serverCPU, base[i].answers)/perAnswer(s[i].serverCPU, s[i].answers))
				sCPU, sN = sCPU+float64(s[i].serverCPU), sN+float64(s[i].answers)
				bCPU, bN = bCPU+float64(base[i].serverCPU), bN+float64(base[i].answers)
			}
			fmt.Fprintf(w, "e2e %s: %s/baseline throughput %.3f (rounds %.3f..%.3f); server CPU per answer %.1f vs %.1f us (baseline/%s %.3f pooled, %.3f median of rounds)\n",
				ph, side, median(thr), slices.Min(thr), slices.Max(thr), sCPU/sN/1e3, bCPU/bN/1e3, side, (bCPU/bN)/(sCPU/sN), median(cpu))
		}
	}
}

func perAnswer(d time.Duration, n int64) float64 { return float64(d) / float64(n) }

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loginOnce logs the load client in to tetherd and returns the token.
func loginOnce(ctx context.Context, t *target) (string, error) {
	c, err := dial(ctx, t)
	if err != nil {
		return "", err
	}
	defer c.close()
	if _, err := c.do(); err != nil {
		return "", err
	}
	var lr api.LoginResponse
	if err := json.Unmarshal(c.body[:lengthOfJSON(c.body)], &lr); err != nil {
		return "", err
	}
	return lr.Token, nil
}

// lengthOfJSON is the length of the answer's body held at the start of b
// (one JSON value and its final newline).
func lengthOfJSON(b []byte) int {
	if i := strings.IndexByte(string(b), '\n'); i >= 0 {
		return i
	}
	return len(b)
}

// tetherdProc is the running tetherd.
type tetherdProc struct {
	cmd  *exec.Cmd
	addr string
}

// startTetherd starts the tetherd binary with file SVIDs on free loopback
// ports, login rate limits off and session caps out of reach (the login
// phase opens thousands of sessions), logging JSON at info level into a
// file, and waits until /readyz answers 200.
func startTetherd(ctx context.Context, bin string, p *pki, dir string) (*tetherdProc, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	health, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "tetherd.log")) //nolint:gosec // G304: a file of our own temporary folder
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cert, key := p.svidFiles(tetherdID)
	cmd := exec.Command(bin, "--listen", listen, "--health-listen", health, //nolint:gosec // G204: the binary under test, named by the caller
		"--svid-cert", cert, "--svid-key", key, "--bundle", p.bundle,
		"--admin", "spiffe://"+trustDomain.Name()+"/admin/*",
		"--login-rate", "0", "--max-sessions", "10000000", "--max-sessions-per-identity", "10000000")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	tp := &tetherdProc{cmd: cmd, addr: listen}
	deadline := time.Now().Add(30 * time.Second)
	poll := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+api.PathReadyz, nil)
		resp, err := poll.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return tp, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b, _ := os.ReadFile(logf.Name())
			return tp, fmt.Errorf("tetherd not ready: %.2000s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer starts this binary as a server of kind with id's SVID and
// returns its target (address and pid).
func startServer(ctx context.Context, p *pki, kind string, id spiffeid.ID) (*target, *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cert, key := p.svidFiles(id)
	cmd := exec.Command(self, roleServe, "-kind", kind, "-cert", cert, "-key", key, "-bundle", p.bundle, "-jwks", p.jwks) //nolint:gosec // G204: this very binary
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "listening ")
		if !ok {
			return nil, cmd, fmt.Errorf("%s: did not start (%q)", kind, s)
		}
		return &target{addr: addr, pid: cmd.Process.Pid}, cmd, nil
	case <-time.After(30 * time.Second):
		return nil, cmd, fmt.Errorf("%s: did not start in 30s", kind)
	case <-ctx.Done():
		return nil, cmd, ctx.Err()
	}
}

// stopProcess ends a server: SIGTERM, then SIGKILL after a few seconds.
func stopProcess(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

// startPerf records each server of sides with perf record (-perf DIR) into
// DIR/<side><suffix>.perf.data until the returned function is called.
func startPerf(dir, suffix string, sides []*target, log io.Writer) func() {
	if dir == "" {
		return func() {}
	}
	var cmds []*exec.Cmd
	for _, t := range sides {
		cmd := exec.Command("perf", "record", "-F", "1999", "-g", "-p", strconv.Itoa(t.pid), "-o", filepath.Join(dir, t.name+suffix+".perf.data")) //nolint:gosec // G204: perf on our own children
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(log, "e2e: perf:", err)
			continue
		}
		cmds = append(cmds, cmd)
	}
	time.Sleep(500 * time.Millisecond) // perf attaches
	return func() {
		for _, c := range cmds {
			_ = c.Process.Signal(os.Interrupt)
			_ = c.Wait()
		}
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
