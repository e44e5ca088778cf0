package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// TestWalkthrough drives every command the way the README does.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	s := newStack(t, "--session-ttl", "8h", "--idle-timeout", "15m")
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)

	alice.fail(1, []string{"whoami"}, "not logged in", aliceID, "tether login")

	// login
	r := alice.ok("login")
	require.Contains(t, r.stdout, "Logged in to "+s.URL())
	require.Contains(t, r.stdout, aliceID)
	require.Regexp(t, regexp.MustCompile(`Expires:\s+in 7h59m`), r.stdout, "times are relative")
	require.Regexp(t, regexp.MustCompile(`Idle end:\s+in 14m5\ds unless used`), r.stdout)

	// The cache: folder 0700, one file 0600 named after server and SPIFFE ID.
	fi, err := os.Stat(alice.cache)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	entries, err := os.ReadDir(alice.cache)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files are left behind")
	require.Equal(t, filepath.Base(alice.cacheFile()), entries[0].Name())
	require.Regexp(t, `^[0-9a-f]{64}\.json$`, entries[0].Name())
	fi, err = os.Stat(alice.cacheFile())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// whoami, text and JSON; global flags before or after the command.
	me := alice.session("whoami")
	require.Equal(t, aliceID, me.SPIFFEID)
	require.Equal(t, svid.Fingerprint(alice.svid.Certificates[0]), me.CNF.X5TS256, "bound to alice's leaf")
	var before api.SessionResponse
	decodeJSON(t, alice.ok("--output", "json", "whoami").stdout, &before)
	require.Equal(t, me.SessionID, before.Session.SessionID)
	var viaEnv api.SessionResponse
	decodeJSON(t, alice.runEnv(map[string]string{"TETHER_OUTPUT": "json"}, "whoami").stdout, &viaEnv)
	require.Equal(t, me.SessionID, viaEnv.Session.SessionID)
	r = alice.ok("whoami")
	require.Contains(t, r.stdout, me.SessionID)
	require.Contains(t, r.stdout, me.CNF.X5TS256)

	// bob's sessions; he logs in by himself.
	bobSession := bob.list()
	require.Len(t, bobSession, 2, "alice's and bob's own, logged in by itself")
	b1 := bob.session("whoami")
	require.Equal(t, bobID, b1.SPIFFEID)

	// sessions list: a table for people, the API's objects in JSON.
	r = alice.ok("sessions", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, `^SESSION ID\s+SPIFFE ID\s+STATE\s+CREATED\s+LAST USED\s+EXPIRES\s+IDLE END\s+ROLES$`, lines[0])
	require.Equal(t, strings.Index(lines[0], "SPIFFE ID"), strings.Index(lines[1], "spiffe://"), "aligned columns")
	require.Equal(t, strings.Index(lines[0], "SPIFFE ID"), strings.Index(lines[2], "spiffe://"), "aligned columns")
	require.Contains(t, lines[1], me.SessionID, "oldest first")
	require.Contains(t, lines[1], "in 7h59m")
	require.Contains(t, lines[2], b1.SessionID)
	onlyBob := alice.list("--spiffe-id", bobID)
	require.Len(t, onlyBob, 1)
	require.Equal(t, b1.SessionID, onlyBob[0].SessionID)

	// sessions revoke SESSION_ID
	r = alice.ok("sessions", "revoke", b1.SessionID)
	require.Contains(t, r.stdout, "Revoked session "+b1.SessionID)
	alice.fail(1, []string{"sessions", "revoke", b1.SessionID}, "no live session "+b1.SessionID)
	require.Empty(t, alice.list("--spiffe-id", bobID))

	// sessions revoke --spiffe-id, in JSON
	bob.ok("login")
	var revoked api.RevokeResponse
	decodeJSON(t, alice.ok("sessions", "revoke", "--spiffe-id", bobID, "-o", "json").stdout, &revoked)
	require.Equal(t, 1, revoked.Revoked)
	r = alice.ok("sessions", "revoke", "--spiffe-id", bobID)
	require.Contains(t, r.stdout, "Revoked 0 sessions of "+bobID)

	// logout
	r = alice.ok("logout")
	require.Contains(t, r.stdout, "Logged out")
	require.NoFileExists(t, alice.cacheFile())
	alice.fail(1, []string{"whoami"}, "not logged in")
	r = alice.ok("logout")
	require.Contains(t, r.stdout, "nothing to do")
	for _, s := range bob.list() {
		require.NotEqual(t, me.SessionID, s.SessionID, "alice's session is over")
	}

	// version
	r = alice.ok("version")
	require.Regexp(t, `^tether \S+ \(go`, r.stdout)
	var v map[string]string
	require.NoError(t, json.Unmarshal([]byte(alice.ok("version", "-o", "json").stdout), &v))
	require.NotEmpty(t, v["version"])
}

func TestLoginEndsThePreviousSession(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	first := alice.session("login")
	second := alice.session("login")
	require.NotEqual(t, first.SessionID, second.SessionID)
	live := alice.list("--spiffe-id", aliceID)
	require.Len(t, live, 1, "the first session was ended, not left to idle out")
	require.Equal(t, second.SessionID, live[0].SessionID)
}

// TestRotationRebinds: the SVID rotates (a new leaf and key for the same
// SPIFFE ID) between two runs of the CLI; the cached session is rebound, not
// replaced.
func TestRotationRebinds(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	first := alice.session("login")

	alice.rotate()
	rebound := alice.session("whoami")
	require.Equal(t, first.SessionID, rebound.SessionID, "the same session")
	require.Equal(t, first.ExpiresAt, rebound.ExpiresAt, "rebind never moves the absolute end")
	require.Equal(t, svid.Fingerprint(alice.svid.Certificates[0]), rebound.CNF.X5TS256, "bound to the new leaf")

	alice.rotate()
	list := alice.list()
	require.Len(t, list, 1, "no new session was started")
	require.Equal(t, first.SessionID, list[0].SessionID)
	require.Equal(t, svid.Fingerprint(alice.svid.Certificates[0]), list[0].CNF.X5TS256)
}

// TestSessionEndedLogsInAgain: a command that needs a session logs in again
// when tetherd says the cached one has ended; whoami does not.
func TestSessionEndedLogsInAgain(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)
	first := alice.session("login")
	bob.ok("sessions", "revoke", first.SessionID)

	list := alice.list()
	var mine []string
	for _, s := range list {
		if s.SPIFFEID == aliceID {
			mine = append(mine, s.SessionID)
		}
	}
	require.Len(t, mine, 1, "alice logged in again")
	require.NotEqual(t, first.SessionID, mine[0])
	require.Equal(t, mine[0], alice.session("whoami").SessionID)

	// whoami shows the cached session and never starts one.
	bob.ok("sessions", "revoke", "--spiffe-id", aliceID)
	alice.fail(1, []string{"whoami"}, "the session has ended", "tether login")
	require.Empty(t, bob.list("--spiffe-id", aliceID), "whoami did not log in")
	alice.fail(1, []string{"whoami"}, "not logged in")
}

// TestRestartedTetherd: a restart ends every session; the cached token is
// refused and the next command logs in again.
func TestRestartedTetherd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	first := alice.session("login")
	s.restart()
	list := alice.list()
	require.Len(t, list, 1)
	require.NotEqual(t, first.SessionID, list[0].SessionID)
	require.Equal(t, aliceID, list[0].SPIFFEID)
}

// TestCopiedCacheFile: a cache file copied to another user, even renamed to
// be theirs, never acts as its owner.
func TestCopiedCacheFile(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)
	carol := s.user(t, carolID)
	aliceSession := alice.session("login")
	stolen, err := os.ReadFile(alice.cacheFile())
	require.NoError(t, err)

	plant := func(u *user, name string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(u.cache, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(u.cache, name), stolen, 0o600))
	}

	// Under alice's name, the file is not bob's: bob is not logged in.
	plant(bob, filepath.Base(alice.cacheFile()))
	bob.fail(1, []string{"whoami"}, "not logged in")

	// Renamed to be bob's: tetherd refuses alice's token over bob's SVID.
	plant(bob, filepath.Base(bob.cacheFile()))
	r := bob.fail(1, []string{"whoami"}, "does not accept the cached token")
	require.NotContains(t, r.stdout+r.stderr, aliceSession.SessionID)
	// A command that needs a session logs bob in as bob.
	plant(bob, filepath.Base(bob.cacheFile()))
	bob.list()
	me := bob.session("whoami")
	require.Equal(t, bobID, me.SPIFFEID)
	require.NotEqual(t, aliceSession.SessionID, me.SessionID)

	// carol is no admin: the stolen file gets her nowhere.
	plant(carol, filepath.Base(carol.cacheFile()))
	carol.fail(1, []string{"whoami"}, "does not accept the cached token")
	plant(carol, filepath.Base(carol.cacheFile()))
	carol.fail(1, []string{"sessions", "list"}, "not an admin: "+carolID+" matches no --admin pattern")
	plant(carol, filepath.Base(carol.cacheFile()))
	carol.fail(1, []string{"sessions", "revoke", aliceSession.SessionID}, "not an admin")

	// alice's session is untouched and still hers.
	require.Equal(t, aliceSession.SessionID, alice.session("whoami").SessionID)
}

func TestWrongServerIDRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	args := []string{"--server-id", "spiffe://example.org/not-tetherd", "login"}
	alice.fail(1, args, "refusing to talk to "+s.URL(), "presented "+serverID, "spiffe://example.org/not-tetherd")
	require.NoFileExists(t, alice.cacheFile(), "nothing was cached")

	// The same, from the environment, for a command that already holds a
	// session for the right server.
	alice.ok("login")
	alice.failEnv(map[string]string{"TETHER_SERVER_ID": "spiffe://example.org/admin/alice"}, 1, []string{"sessions", "list"}, "refusing to talk")
}

func TestFailures(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	carol := s.user(t, carolID)

	carol.fail(1, []string{"login"}, "not an admin: "+carolID+" matches no --admin pattern of tetherd")

	// tetherd is not there.
	alice.fail(1, []string{"--server", "https://" + freeAddr(t), "login"}, "cannot reach tetherd", "connection refused")

	// An unreadable SVID.
	alice.fail(1, []string{"--svid-cert", filepath.Join(alice.dir, "missing.pem"), "login"}, "cannot load the SVID", "missing.pem")

	// tetherd's certificate does not chain to our bundle.
	other := testpki.NewCA(t, trustDomain)
	otherDir := t.TempDir()
	mallory := other.WriteFiles(t, otherDir, "mallory", other.Issue(t, aliceID))
	alice.fail(1, []string{"--bundle", mallory.Bundle, "login"}, "refusing to talk to "+s.URL(), "not a valid SVID under --bundle")

	// Our SVID does not chain to tetherd's bundle.
	alice.fail(1, []string{"--svid-cert", mallory.Cert, "--svid-key", mallory.Key, "login"}, "refused this SVID")

	// No Workload API where it is said to be: at once, not after the timeout.
	alice.failEnv(map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": ""}, 1,
		[]string{"--workload-api", "unix://" + filepath.Join(alice.dir, "no-agent.sock"), "--workload-api-timeout", "300ms", "whoami"},
		"no Workload API at unix://"+filepath.Join(alice.dir, "no-agent.sock"), "does not exist")
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	noFiles := map[string]string{"TETHER_SVID_CERT": "", "TETHER_SVID_KEY": "", "TETHER_BUNDLE": ""}
	for name, tc := range map[string]struct {
		args   []string
		change map[string]string
		want   string
	}{
		"unknown-command":      {args: []string{"logon"}, want: `unknown command "logon" for "tether" (did you mean login or logout?)`},
		"unknown-subcommand":   {args: []string{"sessions", "show"}, want: `unknown command "show"`},
		"unknown-flag":         {args: []string{"whoami", "--verbosity"}, want: "unknown flag: --verbosity"},
		"flag-without-value":   {args: []string{"whoami", "--server-id"}, want: "flag needs an argument"},
		"extra-argument":       {args: []string{"whoami", "alice"}, want: "unknown command"},
		"bad-flag-value":       {args: []string{"whoami", "--workload-api-timeout", "soon"}, want: `invalid argument "soon" for "--workload-api-timeout"`},
		"completion-extra-arg": {args: []string{"completion", "bash", "now"}, want: "unknown command"},
		"version-extra-arg":    {args: []string{"version", "now"}, want: "unknown command"},
		"revoke-nothing":       {args: []string{"sessions", "revoke"}, want: "give one SESSION_ID or --spiffe-id"},
		"revoke-two":           {args: []string{"sessions", "revoke", "a", "b"}, want: "give one SESSION_ID"},
		"revoke-both":          {args: []string{"sessions", "revoke", "a", "--spiffe-id", bobID}, want: "not both"},
		"revoke-bad-id":        {args: []string{"sessions", "revoke", "--spiffe-id", "bob"}, want: "--spiffe-id"},
		"revoke-empty":         {args: []string{"sessions", "revoke", ""}, want: "sessions revoke: no session ID"},
		"revoke-self":          {args: []string{"sessions", "revoke", "self"}, want: "run 'tether logout'"},
		"revoke-self-rebind":   {args: []string{"sessions", "revoke", "self/rebind"}, want: `"self/rebind" is not a session ID`},
		"approve-empty":        {args: []string{"sessions", "approve", ""}, want: "sessions approve: no session ID"},
		"approve-dot-dot":      {args: []string{"sessions", "approve", ".."}, want: `".." is not a session ID`},
		"deny-self":            {args: []string{"sessions", "deny", "self"}, want: `sessions deny: "self" is not a session ID`},
		"help-unknown-topic":   {args: []string{"help", "bogus"}, want: `unknown help topic "bogus"`},
		"help-unknown-sub":     {args: []string{"help", "sessions", "bogus"}, want: `unknown help topic "sessions bogus"`},
		"completion-bad-shell": {args: []string{"completion", "bogus"}, want: `completion: unknown shell "bogus"`},
		"list-bad-id":          {args: []string{"sessions", "list", "--spiffe-id", "https://example.org/bob"}, want: "is not a SPIFFE ID"},
		"no-server-id":         {args: []string{"whoami"}, change: map[string]string{"TETHER_SERVER_ID": ""}, want: "--server-id (or TETHER_SERVER_ID) is required"},
		"bad-server-id":        {args: []string{"whoami", "--server-id", "tetherd"}, want: "--server-id"},
		"http-server":          {args: []string{"whoami", "--server", "http://" + s.api}, want: "--server"},
		"bad-output":           {args: []string{"whoami", "--output", "yaml"}, want: `--output: "yaml" is not text or json`},
		"bad-output-env":       {args: []string{"whoami"}, change: map[string]string{"TETHER_OUTPUT": "yaml"}, want: "TETHER_OUTPUT"},
		"both-sources":         {args: []string{"whoami", "--workload-api", "unix:///tmp/agent.sock", "--svid-cert", alice.files.Cert}, want: "choose one identity source"},
		"both-sources-in-env":  {args: []string{"whoami"}, change: map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///tmp/agent.sock"}, want: "choose one identity source"},
		"no-source":            {args: []string{"whoami"}, change: noFiles, want: "no identity"},
		"files-without-key":    {args: []string{"whoami", "--svid-cert", alice.files.Cert}, change: noFiles, want: "--svid-key (or TETHER_SVID_KEY) is missing"},
		"bad-workload-address": {args: []string{"whoami", "--workload-api", "/tmp/agent.sock"}, change: noFiles, want: "--workload-api"},
	} {
		t.Run(name, func(t *testing.T) {
			r := alice.runEnv(tc.change, tc.args...)
			checkFailure(t, r, 2, tc.args, tc.want)
			require.Empty(t, r.stdout)
		})
	}
	require.NoDirExists(t, alice.cache, "usage errors never talk to tetherd")

	// A flag beats the environment: --workload-api with TETHER_SVID_* set
	// takes the Workload API (which is not there).
	alice.fail(1, []string{"whoami", "--workload-api", "unix://" + filepath.Join(alice.dir, "none.sock"), "--workload-api-timeout", "200ms"}, "Workload API")
}

func TestHelpAndCompletion(t *testing.T) {
	t.Parallel()
	u := &user{t: t, env: map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir()}}
	for _, args := range [][]string{{"--help"}, {"login", "--help"}, {"sessions", "revoke", "--help"}, {"help", "sessions", "list"}} {
		r := u.run(args...)
		require.Equal(t, 0, r.code, r.String())
		require.Contains(t, r.stdout, "Example", "help for %v has examples", args)
	}
	for _, shell := range []string{"bash", "zsh"} {
		r := u.run("completion", shell)
		require.Equal(t, 0, r.code, r.String())
		require.Contains(t, r.stdout, "tether")
		require.Empty(t, r.stderr)
	}
	r := u.run("version")
	require.Equal(t, 0, r.code, "version needs no server or identity: %s", r)
}

// TestCacheFallbacks: $TETHER_CACHE_DIR, else $XDG_RUNTIME_DIR/tether, else
// ~/.cache/tether.
func TestCacheFallbacks(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	name := filepath.Base(alice.cacheFile())
	xdg := filepath.Join(alice.dir, "run")
	require.NoError(t, os.Mkdir(xdg, 0o700))

	alice.runEnv(map[string]string{"TETHER_CACHE_DIR": "", "XDG_RUNTIME_DIR": xdg}, "login")
	require.FileExists(t, filepath.Join(xdg, "tether", name))
	alice.runEnv(map[string]string{"TETHER_CACHE_DIR": ""}, "login")
	require.FileExists(t, filepath.Join(alice.dir, ".cache", "tether", name))
	fi, err := os.Stat(filepath.Join(alice.dir, ".cache", "tether"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// A folder of the user's that others may enter but not write is
	// accepted, as ssh accepts such a ~/.ssh: the files in it are 0600.
	readable := filepath.Join(alice.dir, "readable")
	require.NoError(t, os.Mkdir(readable, 0o700))
	require.NoError(t, os.Chmod(readable, 0o755))
	alice.runEnv(map[string]string{"TETHER_CACHE_DIR": readable}, "login")
	fi, err = os.Stat(filepath.Join(readable, name))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// openFolder makes dir (if missing) and gives it mode perm, whatever the
// umask.
func openFolder(t *testing.T, dir string, perm os.FileMode) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.Chmod(dir, perm))
}

// aliceSessions is alice's live sessions as tetherd (asked by bob) sees
// them.
func aliceSessions(bob *user) []string {
	bob.t.Helper()
	var ids []string
	for _, s := range bob.list("--spiffe-id", aliceID) {
		ids = append(ids, s.SessionID)
	}
	return ids
}

// TestCacheFolderCheckedBeforeLogin: a cache folder that others can write
// (or that is not the user's, or is a symbolic link) is refused before
// tether talks to tetherd: login exits 1 without having started a session,
// which repeated would fill the per-identity cap.
func TestCacheFolderCheckedBeforeLogin(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)
	bob.ok("login")

	for _, perm := range []os.FileMode{0o777, 0o770, 0o707, 0o1777} {
		openFolder(t, alice.cache, perm)
		for _, args := range [][]string{{"login"}, {"sessions", "list"}, {"sessions", "revoke", "--spiffe-id", bobID}, {"whoami"}, {"logout"}} {
			r := alice.run(args...)
			require.Empty(t, aliceSessions(bob), "%04o: tether %v started no session for alice", perm, args)
			checkFailure(t, r, 1, args, "token cache folder "+alice.cache+" is writable by other users", "chmod 700 "+alice.cache)
			require.Empty(t, r.stdout)
		}
	}
	require.Len(t, bob.list("--spiffe-id", bobID), 1, "alice revoked nothing")
	require.NoFileExists(t, alice.cacheFile())

	// A symbolic link to a good folder is not followed.
	target := filepath.Join(alice.dir, "target")
	openFolder(t, target, 0o700)
	link := filepath.Join(alice.dir, "link")
	require.NoError(t, os.Symlink(target, link))
	alice.failEnv(map[string]string{"TETHER_CACHE_DIR": link}, 1, []string{"login"}, "token cache folder "+link+" is a symbolic link")
	require.Empty(t, aliceSessions(bob))

	// Not the user's folder (only root can give a folder away).
	t.Run("foreign-owner", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to chown a folder to another user")
		}
		theirs := filepath.Join(alice.dir, "theirs")
		openFolder(t, theirs, 0o700)
		require.NoError(t, os.Chown(theirs, 4242, -1))
		alice.failEnv(map[string]string{"TETHER_CACHE_DIR": theirs}, 1, []string{"login"}, "token cache folder "+theirs+" belongs to uid 4242, not to you (uid 0)")
		require.Empty(t, aliceSessions(bob))
	})

	// Fixed as the message says, login works.
	require.NoError(t, os.Chmod(alice.cache, 0o700))
	alice.ok("login")
	require.Len(t, aliceSessions(bob), 1)
}

// TestCachedTokenNeverReadFromAnOpenPlace: a token cached in a folder that
// others have since been allowed to write, or in a file others may read or
// write, is not read: whoami and logout fail before talking to tetherd, and
// the session stays as it was.
func TestCachedTokenNeverReadFromAnOpenPlace(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)
	me := alice.session("login")

	check := func(want ...string) {
		t.Helper()
		for _, args := range [][]string{{"whoami"}, {"logout"}, {"login"}, {"sessions", "list"}} {
			r := alice.fail(1, args, want...)
			require.NotContains(t, r.stdout+r.stderr, me.SessionID, "the cached session was not shown")
		}
		require.Equal(t, []string{me.SessionID}, aliceSessions(bob), "the session was neither ended nor replaced")
	}

	openFolder(t, alice.cache, 0o777)
	check("token cache folder "+alice.cache+" is writable by other users", "chmod 700 "+alice.cache)
	require.NoError(t, os.Chmod(alice.cache, 0o700))

	for _, perm := range []os.FileMode{0o644, 0o640, 0o660, 0o602} {
		require.NoError(t, os.Chmod(alice.cacheFile(), perm))
		check("token cache file "+alice.cacheFile()+" is open to other users", "chmod 600 "+alice.cacheFile())
	}
	require.NoError(t, os.Chmod(alice.cacheFile(), 0o600))

	// A symbolic link to a good file is not followed.
	elsewhere := filepath.Join(alice.dir, "token.json")
	require.NoError(t, os.Rename(alice.cacheFile(), elsewhere))
	require.NoError(t, os.Symlink(elsewhere, alice.cacheFile()))
	check("token cache file "+alice.cacheFile()+" is a symbolic link", "rm "+alice.cacheFile())
	require.NoError(t, os.Remove(alice.cacheFile()))
	require.NoError(t, os.Rename(elsewhere, alice.cacheFile()))

	t.Run("foreign-owner", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to chown a file to another user")
		}
		require.NoError(t, os.Chown(alice.cacheFile(), 4242, -1))
		check("token cache file "+alice.cacheFile()+" belongs to uid 4242", "rm "+alice.cacheFile())
		require.NoError(t, os.Chown(alice.cacheFile(), 0, -1))
	})

	// Put right, the same session is there.
	require.Equal(t, me.SessionID, alice.session("whoami").SessionID)
}
