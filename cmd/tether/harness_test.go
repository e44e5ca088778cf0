package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
)

// The tests build and drive the real binaries: tether, and tetherd with
// file SVIDs from testpki.
var bin struct {
	tether, tetherd string
}

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, remove, err := testproc.BuildTemp(testproc.Race, ".", "../tetherd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	bin.tether = filepath.Join(dir, "tether")
	bin.tetherd = filepath.Join(dir, "tetherd")
	return m.Run()
}

const (
	trustDomain = "example.org"
	serverID    = "spiffe://example.org/tetherd"
	aliceID     = "spiffe://example.org/admin/alice"
	bobID       = "spiffe://example.org/admin/bob"
	carolID     = "spiffe://example.org/workload/carol" // not an admin
	adminFlag   = "spiffe://example.org/admin/*"
)

// stack is a CA and a running tetherd.
type stack struct {
	t      *testing.T
	ca     *testpki.CA
	dir    string
	server testpki.Files
	args   []string
	api    string
	health string
	proc   *testproc.Process
}

// newStack starts tetherd with file SVIDs, --admin spiffe://example.org/admin/*,
// no login rate limit, and extra flags.
func newStack(t *testing.T, extra ...string) *stack {
	t.Helper()
	s := &stack{t: t, ca: testpki.NewCA(t, trustDomain), dir: t.TempDir()}
	s.server = s.ca.WriteFiles(t, s.dir, "tetherd", s.ca.Issue(t, serverID))
	// A free port can be taken by another test between freeAddr and
	// tetherd's bind: try again with new ports then.
	for attempt := 1; ; attempt++ {
		addrs := testutil.FreeAddrs(t, 2)
		s.api, s.health = addrs[0], addrs[1]
		s.args = append([]string{
			"--listen", s.api, "--health-listen", s.health,
			"--svid-cert", s.server.Cert, "--svid-key", s.server.Key, "--bundle", s.server.Bundle,
			"--admin", adminFlag, "--login-rate", "0", "--log-format", "text",
		}, extra...)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 3 || s.proc == nil || !strings.Contains(s.proc.Stderr(), "address already in use") {
			require.NoError(t, err, "tetherd did not start")
		}
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Log(s.proc.Report())
		}
	})
	return s
}

func (s *stack) URL() string { return "https://" + s.api }

// start starts tetherd and waits until it is ready.
func (s *stack) start() error {
	p, err := testproc.Start(testproc.Config{Path: bin.tetherd, Args: s.args})
	if err != nil {
		return err
	}
	s.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.WaitHTTP(ctx, "http://"+s.health+api.PathReadyz, http.StatusOK); err != nil {
		_ = p.Kill()
		return fmt.Errorf("%w\n%s", err, p.Report())
	}
	return nil
}

// stop ends tetherd with SIGTERM, as an operator would.
func (s *stack) stop() {
	p := s.proc
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.WaitExit(ctx); err != nil {
		_ = p.Kill()
		require.NoError(s.t, err, "tetherd did not stop on SIGTERM:\n%s", p.Report())
	}
}

// restart stops tetherd and starts it again on the same addresses: a new
// signing key and no sessions.
func (s *stack) restart() {
	s.t.Helper()
	s.stop()
	require.NoError(s.t, s.start())
}

// freeAddr is a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// user is a person at a terminal: an SVID in files, a home folder and a
// token cache of their own.
type user struct {
	t     *testing.T
	s     *stack
	id    spiffeid.ID
	dir   string
	svid  *x509svid.SVID
	files testpki.Files
	cache string
	env   map[string]string
}

func (s *stack) user(t *testing.T, id string) *user {
	t.Helper()
	u := &user{t: t, s: s, id: spiffeid.RequireFromString(id), dir: t.TempDir()}
	u.cache = filepath.Join(u.dir, "cache")
	u.rotate()
	u.env = map[string]string{
		"HOME":             u.dir,
		"PATH":             os.Getenv("PATH"),
		"TETHER_CACHE_DIR": u.cache,
		"TETHER_SERVER":    s.URL(),
		"TETHER_SERVER_ID": serverID,
		"TETHER_SVID_CERT": u.files.Cert,
		"TETHER_SVID_KEY":  u.files.Key,
		"TETHER_BUNDLE":    u.files.Bundle,
	}
	return u
}

// rotate gives the user a new leaf (and key) for the same SPIFFE ID, written
// over the old files, as spiffe-helper does.
func (u *user) rotate() {
	u.t.Helper()
	u.svid = u.s.ca.Issue(u.t, u.id.String())
	u.files = u.s.ca.WriteFiles(u.t, u.dir, "svid", u.svid)
}

// cacheFile is where the user's token for this tetherd is cached.
func (u *user) cacheFile() string {
	return filepath.Join(u.cache, cacheFileName(u.s.URL(), u.id))
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// run runs tether with the user's environment (and nothing else of ours).
func (u *user) run(args ...string) result {
	u.t.Helper()
	return u.runEnv(nil, args...)
}

// runEnv runs tether with the user's environment changed by change: a key
// with an empty value is removed.
func (u *user) runEnv(change map[string]string, args ...string) result {
	u.t.Helper()
	p := testproc.Exec(u.t, u.command(change, args...), 90*time.Second)
	r := result{code: p.ExitCode(), stdout: p.Stdout(), stderr: p.Stderr()}
	require.GreaterOrEqual(u.t, r.code, 0, "tether %s: %v", strings.Join(args, " "), p.WaitErr())
	return r
}

// command is tether with args and the user's environment changed by change
// (a key with an empty value is removed), for runEnv or for a test that
// starts it itself.
func (u *user) command(change map[string]string, args ...string) testproc.Config {
	env := map[string]string{}
	for k, v := range u.env {
		env[k] = v
	}
	for k, v := range change {
		env[k] = v
	}
	var list []string
	for k, v := range env {
		if v != "" {
			list = append(list, k+"="+v)
		}
	}
	return testproc.Config{Path: bin.tether, Args: args, Env: list}
}

// ok runs tether and fails the test unless it exits 0 with nothing on
// stderr.
func (u *user) ok(args ...string) result {
	u.t.Helper()
	r := u.run(args...)
	require.True(u.t, r.code == 0 && r.stderr == "", "tether %s: want exit 0 and a quiet stderr, got %s\ntetherd:\n%s", strings.Join(args, " "), r, u.s.proc.Stderr())
	return r
}

// fail runs tether and fails the test unless it exits with code and one
// line on stderr that starts "tether: " and contains every string of want.
func (u *user) fail(code int, args []string, want ...string) result {
	u.t.Helper()
	return u.failEnv(nil, code, args, want...)
}

func (u *user) failEnv(change map[string]string, code int, args []string, want ...string) result {
	u.t.Helper()
	r := u.runEnv(change, args...)
	checkFailure(u.t, r, code, args, want...)
	return r
}

func checkFailure(t *testing.T, r result, code int, args []string, want ...string) {
	t.Helper()
	require.Equal(t, code, r.code, "tether %s: %s", strings.Join(args, " "), r)
	require.True(t, strings.HasPrefix(r.stderr, "tether: ") && strings.HasSuffix(r.stderr, "\n") && strings.Count(r.stderr, "\n") == 1,
		"tether %s: want one line on stderr starting \"tether: \", got %q", strings.Join(args, " "), r.stderr)
	for _, w := range want {
		require.Contains(t, r.stderr, w, "tether %s", strings.Join(args, " "))
	}
}

// session runs tether -o json with args and decodes the session it prints.
func (u *user) session(args ...string) api.Session {
	u.t.Helper()
	r := u.ok(append(args, "-o", "json")...)
	var out api.SessionResponse
	decodeJSON(u.t, r.stdout, &out)
	return out.Session
}

// list runs tether sessions list -o json.
func (u *user) list(args ...string) []api.Session {
	u.t.Helper()
	r := u.ok(append([]string{"sessions", "list", "-o", "json"}, args...)...)
	var out api.SessionsResponse
	decodeJSON(u.t, r.stdout, &out)
	return out.Sessions
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "output is not the API's JSON:\n%s", s)
}
