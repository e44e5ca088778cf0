package replicas

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testetcd"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
)

const (
	tetherdID = "spiffe://example.org/tetherd"
	// within bounds every wait for an event (a replica ready, a process
	// gone): generous, for two busy cores.
	within = 60 * time.Second
)

// bin is the folder with the tetherd and tether binaries TestMain built.
var bin string

func TestMain(m *testing.M) {
	dir, remove, err := testproc.BuildTemp(false, "github.com/tetherproject/tether/cmd/tetherd", "github.com/tetherproject/tether/cmd/tether")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	remove()
	os.Exit(code)
}

// cluster is an etcd cluster, three tetherd replicas on it and HAProxy in
// front of them.
type cluster struct {
	t        *testing.T
	etcd     *testetcd.Cluster
	ca       *testpki.CA
	dir      string
	tetherd  testpki.Files
	replicas []*replica
	lb       *testetcd.HAProxy
}

// replica is one tetherd process, restarted on the same ports.
type replica struct {
	c           *cluster
	i           int
	api, health string
	mu          sync.Mutex
	proc        *testproc.Process
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	ca := testpki.NewCA(t, "example.org")
	c := &cluster{t: t, etcd: testetcd.Start(t, testetcd.Config{CA: ca}), ca: ca, dir: t.TempDir()}
	c.tetherd = ca.WriteFiles(t, c.dir, "tetherd", ca.Issue(t, tetherdID))
	var backends []string
	addrs := testutil.FreeAddrs(t, 2*n)
	for i := range n {
		r := &replica{c: c, i: i, api: addrs[2*i], health: addrs[2*i+1]}
		c.replicas = append(c.replicas, r)
		backends = append(backends, r.api)
	}
	for _, r := range c.replicas {
		r.start()
	}
	for _, r := range c.replicas {
		r.waitReady()
	}
	c.lb = testetcd.StartHAProxy(t, backends...)
	return c
}

func (r *replica) start() {
	t := r.c.t
	t.Helper()
	f := r.c.tetherd
	args := []string{
		"--store", "etcd", "--etcd-endpoints", strings.Join(r.c.etcd.Endpoints(), ","), "--max-staleness", "1s",
		"--svid-cert", f.Cert, "--svid-key", f.Key, "--bundle", f.Bundle,
		"--admin", "spiffe://example.org/admin/*",
		"--listen", r.api, "--health-listen", r.health, "--log-format", "json", "--login-rate", "0",
		"--max-sessions-per-identity", "1000",
	}
	p := testproc.StartT(t, testproc.Config{Name: fmt.Sprintf("tetherd-%d", r.i), Path: filepath.Join(bin, "tetherd"), Args: args})
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
}

var plain = &http.Client{Timeout: 5 * time.Second}

func (r *replica) ready() bool {
	resp, err := plain.Get("http://" + r.health + api.PathReadyz)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until /readyz answers 200 (a failed test shows the
// process's output: testproc.StartT).
func (r *replica) waitReady() {
	r.c.t.Helper()
	testutil.WaitFor(r.c.t, within, fmt.Sprintf("replica %d ready", r.i), r.ready)
}

// kill ends the replica with SIGKILL, as a crash would.
func (r *replica) kill() {
	r.c.t.Helper()
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	require.NoError(r.c.t, p.Kill())
}

// stop ends the replica with SIGTERM and requires exit 0.
func (r *replica) stop() {
	r.c.t.Helper()
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	require.NoError(r.c.t, p.Signal(syscall.SIGTERM))
	require.Equal(r.c.t, 0, p.Exit(r.c.t, within))
}

// admin is an identity with its SVID and an HTTP client presenting it that
// checks the server's SPIFFE ID.
type admin struct {
	id    spiffeid.ID
	svid  *x509svid.SVID
	files testpki.Files
	http  *http.Client
}

func (c *cluster) admin(name string) *admin {
	c.t.Helper()
	s := c.ca.Issue(c.t, "spiffe://example.org/admin/"+name)
	tc := tlsconfig.MTLSClientConfig(testpki.NewSource(s), c.ca.Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString(tetherdID)))
	tc.MinVersion = tls.VersionTLS13
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}
	c.t.Cleanup(tr.CloseIdleConnections)
	return &admin{id: s.ID, svid: s, files: c.ca.WriteFiles(c.t, c.dir, name, s), http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// call sends method path to addr with the token; status 0 means no answer.
func (a *admin) call(addr, method, path, token string) (int, api.Code, []byte) {
	req, err := http.NewRequest(method, "https://"+addr+path, nil)
	if err != nil {
		return 0, "", nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, "", []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e api.ErrorResponse
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return resp.StatusCode, "", body
	}
	return resp.StatusCode, e.Error.Code, body
}

func (a *admin) login(t *testing.T, addr string) (string, api.Session) {
	t.Helper()
	status, _, body := a.call(addr, http.MethodPost, api.PathSessions, "")
	require.Equal(t, http.StatusCreated, status, "login: %s", body)
	var lr api.LoginResponse
	require.NoError(t, json.Unmarshal(body, &lr))
	return lr.Token, lr.Session
}

// cli runs the real tether CLI through the balancer as a.
func (c *cluster) cli(a *admin, args ...string) (int, string) {
	c.t.Helper()
	full := append([]string{"--server", "https://" + c.lb.Addr(), "--server-id", tetherdID,
		"--svid-cert", a.files.Cert, "--svid-key", a.files.Key, "--bundle", a.files.Bundle}, args...)
	p := testproc.StartT(c.t, testproc.Config{Path: filepath.Join(bin, "tether"), Args: full,
		Env: append(os.Environ(), "TETHER_CACHE_DIR="+filepath.Join(c.dir, "cache-"+a.id.Path()[1:]))})
	code := p.Exit(c.t, within)
	return code, p.Stdout() + p.Stderr()
}

// TestCLIThroughBalancer: the real CLI logs in through HAProxy, and its
// session works on every replica, whichever serves it; a logout through
// the balancer is refused by every replica the moment it answers.
func TestCLIThroughBalancer(t *testing.T) {
	c := newCluster(t, 3)
	alice := c.admin("alice")
	code, out := c.cli(alice, "login")
	require.Equal(t, 0, code, out)
	token := func() string {
		code, out := c.cli(alice, "token")
		require.Equal(t, 0, code, out)
		return strings.TrimSpace(out)
	}
	tok := token()
	for _, r := range c.replicas {
		status, _, body := alice.call(r.api, http.MethodGet, api.PathSessionsSelf, tok)
		require.Equal(t, http.StatusOK, status, "replica %d: %s", r.i, body)
	}
	for range 6 { // round robin: every replica serves some of these
		code, out := c.cli(alice, "whoami")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "spiffe://example.org/admin/alice")
	}
	code, out = c.cli(alice, "sessions", "list")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "spiffe://example.org/admin/alice")
	code, out = c.cli(alice, "logout")
	require.Equal(t, 0, code, out)
	for _, r := range c.replicas {
		status, ec, body := alice.call(r.api, http.MethodGet, api.PathSessionsSelf, tok)
		require.Equal(t, http.StatusUnauthorized, status, "replica %d after logout: %s", r.i, body)
		require.Equal(t, api.CodeSessionEnded, ec, "replica %d", r.i)
	}
}

// TestLoadWithRevocationsCrashAndRollingRestart drives logins, uses and
// revocations across three replicas while one is killed with SIGKILL and
// started again, then every replica is restarted in turn, then an etcd
// member dies and comes back. It asserts:
// no token is ever accepted after its revocation answered, on any replica;
// no session that was not revoked is ever refused as ended or unknown (a
// replica that is down may fail to answer, or answer 503); and the sessions
// opened before the restarts all work after them.
func TestLoadWithRevocationsCrashAndRollingRestart(t *testing.T) {
	c := newCluster(t, 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	type live struct {
		tok     string
		id      string
		revoked atomic.Bool
	}
	var (
		mu        sync.Mutex
		violation []string
		accepted  atomic.Int64
		revokes   atomic.Int64
	)
	violate := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(violation) < 20 {
			violation = append(violation, fmt.Sprintf(format, args...))
		}
	}
	// Sessions opened before the chaos, kept to the end.
	keeper := c.admin("keeper")
	var kept []*live
	for range 5 {
		tok, s := keeper.login(t, c.lb.Addr())
		kept = append(kept, &live{tok: tok, id: s.SessionID})
	}

	var wg sync.WaitGroup
	for w := range 4 {
		a := c.admin(fmt.Sprintf("worker%d", w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7)) //nolint:gosec // G404: a reproducible load, not a secret
			var mine []*live
			for ctx.Err() == nil {
				switch op := rng.IntN(10); {
				case op < 2 || len(mine) == 0: // log in through the balancer
					status, _, body := a.call(c.lb.Addr(), http.MethodPost, api.PathSessions, "")
					if status != http.StatusCreated {
						continue // a replica going down mid-call; 503
					}
					var lr api.LoginResponse
					if json.Unmarshal(body, &lr) == nil {
						mine = append(mine, &live{tok: lr.Token, id: lr.Session.SessionID})
					}
				case op < 3: // revoke one on some replica, then check all
					l := mine[rng.IntN(len(mine))]
					r := c.replicas[rng.IntN(len(c.replicas))]
					status, _, _ := a.call(r.api, http.MethodDelete, api.PathSessions+"/"+l.id, l.tok)
					if status != http.StatusNoContent {
						// Not answered (a replica going down): it may or
						// may not have ended; nothing is promised of it.
						mine = remove(mine, l)
						continue
					}
					l.revoked.Store(true)
					revokes.Add(1)
					for _, r := range c.replicas {
						if status, _, _ := a.call(r.api, http.MethodGet, api.PathSessionsSelf, l.tok); status == http.StatusOK {
							violate("replica %d accepted session %s after its revocation answered", r.i, l.id)
						}
					}
					mine = remove(mine, l)
				default: // use one on some replica
					l := mine[rng.IntN(len(mine))]
					r := c.replicas[rng.IntN(len(c.replicas))]
					status, code, body := a.call(r.api, http.MethodGet, api.PathSessionsSelf, l.tok)
					switch {
					case status == http.StatusOK:
						accepted.Add(1)
					case status == 0 || (status == http.StatusServiceUnavailable && code == api.CodeUnavailable):
						// down, or not yet proven fresh: fail closed is allowed
					default:
						violate("replica %d refused live session %s: %d %s", r.i, l.id, status, body)
					}
				}
			}
		}()
	}

	// Chaos: a crash, then a rolling restart, while the load runs.
	waitAccepted := func(more int64) {
		t.Helper()
		target := accepted.Load() + more
		testutil.WaitFor(t, within, fmt.Sprintf("%d more accepted uses (the load stalled)", more), func() bool { return accepted.Load() >= target })
	}
	waitAccepted(50)
	c.replicas[1].kill()
	waitAccepted(50)
	c.replicas[1].start()
	c.replicas[1].waitReady()
	waitAccepted(50)
	for _, r := range c.replicas {
		r.stop()
		waitAccepted(20)
		r.start()
		r.waitReady()
	}
	waitAccepted(50)
	// An etcd member lost, then back: the load goes on (a leader's loss
	// may cost a moment of 503s, which the load allows).
	c.etcd.KillMember(t, 2)
	waitAccepted(50)
	c.etcd.StartMember(t, 2)
	c.etcd.WaitHealthy(t, within)
	waitAccepted(50)
	cancel()
	wg.Wait()

	mu.Lock()
	require.Empty(t, violation)
	mu.Unlock()
	require.Positive(t, revokes.Load(), "the load revoked nothing: it proved nothing")
	for _, l := range kept {
		for _, r := range c.replicas {
			status, _, body := keeper.call(r.api, http.MethodGet, api.PathSessionsSelf, l.tok)
			require.Equal(t, http.StatusOK, status, "replica %d: a session opened before the crash and the rolling restart: %s", r.i, body)
		}
	}
	t.Logf("accepted %d uses, %d revocations checked on every replica", accepted.Load(), revokes.Load())
}

func remove[T comparable](s []T, v T) []T {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// TestQuorumLossFailsClosed: with two of the three etcd members gone every
// replica answers 503 unavailable with Retry-After and /readyz says why;
// once they are back, every replica is ready again by itself (no restart)
// and the session opened before still works.
func TestQuorumLossFailsClosed(t *testing.T) {
	c := newCluster(t, 2)
	alice := c.admin("alice")
	tok, _ := alice.login(t, c.lb.Addr())
	c.etcd.KillMember(t, 0)
	c.etcd.KillMember(t, 1)
	for _, r := range c.replicas {
		testutil.WaitFor(t, within, fmt.Sprintf("replica %d not ready without quorum", r.i), func() bool { return !r.ready() })
		resp, err := plain.Get("http://" + r.health + api.PathReadyz)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Contains(t, string(body), "etcd", "/readyz says why")

		req, err := http.NewRequest(http.MethodGet, "https://"+r.api+api.PathSessionsSelf, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err = alice.http.Do(req)
		require.NoError(t, err)
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "replica %d: %s", r.i, body)
		require.Contains(t, string(body), string(api.CodeUnavailable))
		require.NotEmpty(t, resp.Header.Get("Retry-After"), "every 503 carries Retry-After")
	}
	c.etcd.StartMember(t, 0)
	c.etcd.StartMember(t, 1)
	for _, r := range c.replicas {
		r.waitReady()
		status, _, body := alice.call(r.api, http.MethodGet, api.PathSessionsSelf, tok)
		require.Equal(t, http.StatusOK, status, "replica %d after the quorum came back: %s", r.i, body)
	}
}
