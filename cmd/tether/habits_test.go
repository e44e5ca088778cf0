package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/svid"
)

// The habits of the tools admins know: help without a command, a token for
// scripts, -v, Ctrl-C, a missing socket said at once, completion.

// TestNoCommandPrintsHelp: tether, and tether sessions, print their help
// and exit 0, as gh, kubectl and vault do.
func TestNoCommandPrintsHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"sessions"}} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), args, &stdout, &stderr, func(string) string { return "" })
		require.Equal(t, 0, code, "tether %v: %s", args, stderr.String())
		require.Empty(t, stderr.String())
		require.Contains(t, stdout.String(), "Usage:")
		require.Contains(t, stdout.String(), "Available Commands:")
	}
}

// cachedToken is the token in the user's cache file.
func (u *user) cachedToken() string {
	u.t.Helper()
	raw, err := os.ReadFile(u.cacheFile())
	require.NoError(u.t, err)
	var c cacheFile
	require.NoError(u.t, json.Unmarshal(raw, &c))
	require.NotEmpty(u.t, c.Token)
	return c.Token
}

// TestToken: tether token prints the live token bound to the SVID's leaf
// now, alone on a line, logging in or rebinding first.
func TestToken(t *testing.T) {
	t.Parallel()
	s := newStack(t, "--introspector", carolID)
	alice := s.user(t, aliceID)
	carol, err := client.New(s.URL(), spiffeid.RequireFromString(serverID), s.ca.Issue(t, carolID), s.ca.Bundle())
	require.NoError(t, err)
	t.Cleanup(func() { _ = carol.Close() })
	active := func(token string) bool {
		t.Helper()
		in, err := carol.Introspect(t.Context(), token, svid.Fingerprint(alice.svid.Certificates[0]))
		require.NoError(t, err)
		return in.Active
	}
	jws := regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$`)

	// No session yet: token logs in.
	r := alice.ok("token")
	require.Regexp(t, jws, r.stdout, "the token alone, on one line")
	first := strings.TrimSpace(r.stdout)
	require.Equal(t, alice.cachedToken(), first)
	require.True(t, active(first))
	me := alice.session("whoami")

	// -o json changes nothing: $(tether token) works whatever TETHER_OUTPUT.
	require.Equal(t, r.stdout, alice.ok("token", "-o", "json").stdout)

	// Rotated: token rebinds the same session and prints the new token.
	alice.rotate()
	r = alice.ok("token")
	require.Regexp(t, jws, r.stdout)
	second := strings.TrimSpace(r.stdout)
	require.NotEqual(t, first, second)
	require.True(t, active(second), "bound to the new leaf")
	require.False(t, active(first))
	require.Equal(t, me.SessionID, alice.session("whoami").SessionID, "the same session")
}

// TestVerbose: -v shows the client's logins, rebinds and retries on stderr,
// never a token.
func TestVerbose(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)

	r := alice.run("-v", "login")
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stderr, "msg=client.login")
	require.Contains(t, r.stderr, "spiffe_id="+aliceID)
	require.Contains(t, r.stderr, "msg=tether.identity")
	first := alice.cachedToken()
	require.NotContains(t, r.stderr, first)
	require.NotContains(t, r.stdout, first)

	alice.rotate()
	r = alice.run("whoami", "--verbose")
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stderr, "msg=client.rebind")
	require.Contains(t, r.stderr, "msg=client.retry reason=certificate_rotated")
	for _, token := range []string{first, alice.cachedToken()} {
		require.NotContains(t, r.stderr, token)
	}
	require.NotContains(t, r.stderr, strings.Split(first, ".")[2], "not even a token's signature")

	r = alice.ok("whoami")
	require.Empty(t, r.stderr, "quiet without -v")
}

// TestInterrupted: Ctrl-C while tether waits (for a Workload API or a
// tetherd that never answers) ends it at once with exit 130; SIGTERM with
// 143.
func TestInterrupted(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, trustDomain)
	dir := t.TempDir()
	files := ca.WriteFiles(t, dir, "alice", ca.Issue(t, aliceID))
	u := &user{t: t, env: map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": dir, "TETHER_CACHE_DIR": filepath.Join(dir, "cache"),
		"TETHER_SERVER_ID": serverID,
	}}
	filesEnv := map[string]string{"TETHER_SVID_CERT": files.Cert, "TETHER_SVID_KEY": files.Key, "TETHER_BUNDLE": files.Bundle}

	// A Workload API that has no SVID to give yet: it holds the stream open.
	agentDir, err := os.MkdirTemp("", "agent-") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(agentDir) })
	agent := fakeworkload.New(filepath.Join(agentDir, "agent.sock"))
	require.NoError(t, agent.Start())
	t.Cleanup(agent.Stop)

	// A tetherd that accepts connections and never says a word.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		for {
			select {
			case conn := <-accepted:
				_ = conn.Close()
			default:
				return
			}
		}
	})
	silent := "https://" + ln.Addr().String()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, "tether never started %s", what)
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		waiting func()
		sig     syscall.Signal
		code    int
		want    string
	}{
		{
			name: "workload-api", sig: syscall.SIGINT, code: 130, want: "tether: interrupted\n",
			args:    []string{"whoami", "--workload-api", agent.Addr(), "--workload-api-timeout", "10m"},
			waiting: func() { waitFor("to fetch an SVID", func() bool { return agent.Fetches() > 0 }) },
		},
		{
			name: "server", sig: syscall.SIGINT, code: 130, want: "tether: interrupted\n",
			env: filesEnv, args: []string{"login", "--server", silent},
			waiting: func() { waitFor("to connect", func() bool { return len(accepted) > 0 }) },
		},
		{
			name: "server-sigterm", sig: syscall.SIGTERM, code: 143, want: "tether: terminated\n",
			env: filesEnv, args: []string{"sessions", "list", "--server", silent},
			waiting: func() { waitFor("to connect", func() bool { return len(accepted) > 0 }) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(accepted) > 0 {
				_ = (<-accepted).Close()
			}
			p := testproc.StartT(t, u.command(tc.env, tc.args...))
			tc.waiting()
			require.False(t, p.Exited(), "tether gave up by itself:\n%s", p.Report())
			require.NoError(t, p.Signal(tc.sig))
			require.Equal(t, tc.code, p.Exit(t, 10*time.Second), p.Report())
			require.Equal(t, tc.want, p.Stderr())
			require.Empty(t, p.Stdout())
		})
	}
}

// TestWorkloadAPISocketMissing: a unix socket that is not there, is no
// socket, or has nobody behind it fails at once, naming it, not after
// --workload-api-timeout.
func TestWorkloadAPISocketMissing(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "sock-") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	u := &user{t: t, env: map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": dir, "TETHER_SERVER_ID": serverID,
	}}

	missing := filepath.Join(dir, "missing.sock")
	file := filepath.Join(dir, "file.sock")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	require.NoError(t, ln.Close()) // an agent that died: the socket file stays

	for _, tc := range []struct{ path, want string }{
		{missing, missing + " does not exist"},
		{file, file + " is not a socket"},
		{stale, "nothing listens on " + stale},
	} {
		addr := "unix://" + tc.path
		args := []string{"whoami", "--workload-api", addr, "--workload-api-timeout", "10m"}
		// Killed, and the test failed, if it waits anywhere near the timeout.
		p := testproc.Exec(t, u.command(nil, args...), 30*time.Second)
		checkFailure(t, result{code: p.ExitCode(), stdout: p.Stdout(), stderr: p.Stderr()}, 1, args,
			"no Workload API at "+addr, tc.want, "SPIFFE_ENDPOINT_SOCKET")
	}
}

// completions runs tether's hidden __complete command, as the shell scripts
// do on Tab, and returns the offered values (descriptions dropped) and the
// directive line.
func (u *user) completions(args ...string) (values []string, directive string) {
	u.t.Helper()
	r := u.run(append([]string{"__complete"}, args...)...)
	require.Equal(u.t, 0, r.code, r.String())
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.NotEmpty(u.t, lines)
	for _, l := range lines[:len(lines)-1] {
		values = append(values, strings.SplitN(l, "\t", 2)[0])
	}
	return values, lines[len(lines)-1]
}

// TestCompletion: completion offers -o's values, and the live sessions (and
// their SPIFFE IDs) asked of tetherd with the cached session; it never logs
// in.
func TestCompletion(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)

	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		r := alice.ok("completion", shell)
		require.Contains(t, r.stdout, "tether", shell)
	}
	noFiles := ":4" // cobra.ShellCompDirectiveNoFileComp
	values, directive := alice.completions("whoami", "-o", "")
	require.Equal(t, []string{"text", "json"}, values)
	require.Equal(t, noFiles, directive)
	values, _ = alice.completions("sessions", "list", "--output", "j")
	require.Equal(t, []string{"json"}, values)

	// Without a cached session: nothing offered, and no session started.
	bobSession := bob.session("login")
	values, directive = alice.completions("sessions", "revoke", "")
	require.Empty(t, values)
	require.Equal(t, noFiles, directive)
	require.Empty(t, aliceSessions(bob), "completion never logs in")
	require.NoDirExists(t, alice.cache)

	me := alice.session("login")
	values, directive = alice.completions("sessions", "revoke", "")
	require.ElementsMatch(t, []string{bobSession.SessionID, me.SessionID}, values)
	require.Equal(t, noFiles, directive)
	r := alice.run("__complete", "sessions", "revoke", "")
	require.Contains(t, r.stdout, me.SessionID+"\t"+aliceID, "described by their SPIFFE ID")
	values, _ = alice.completions("sessions", "revoke", me.SessionID[:4])
	require.Contains(t, values, me.SessionID)
	for _, v := range values {
		require.True(t, strings.HasPrefix(v, me.SessionID[:4]), v)
	}
	values, _ = alice.completions("sessions", "revoke", me.SessionID, "")
	require.Empty(t, values, "one session ID at most")

	values, _ = alice.completions("sessions", "list", "--spiffe-id", "")
	require.ElementsMatch(t, []string{aliceID, bobID}, values)
	values, _ = alice.completions("sessions", "revoke", "--spiffe-id", "spiffe://example.org/admin/b")
	require.Equal(t, []string{bobID}, values)

	// Nothing of it printed a token.
	r = alice.run("__complete", "sessions", "revoke", "")
	require.NotContains(t, r.stdout+r.stderr, alice.cachedToken())
	require.Equal(t, []string{bobSession.SessionID, me.SessionID}, sessionIDs(bob.list()), "completion ended nothing and started nothing")
}

// sessionIDs is the IDs of list, in its order.
func sessionIDs(list []api.Session) []string {
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.SessionID)
	}
	return ids
}
