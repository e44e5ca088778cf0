package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
)

// TestDevMode runs `tetherd dev` in-process: it writes the bundle and two
// SVIDs, prints exports that point at its listener, lets the dev admin log
// in and refuses the non-admin; cancelling it (as SIGTERM would) exits 0.
func TestDevMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"dev", "--dir", dir, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"}, stdout, stderr)
	}()
	t.Cleanup(cancel)

	exports := map[string]string{}
	re := regexp.MustCompile(`(?m)^export (TETHER_[A-Z_]+)=(\S+)$`)
	testutil.WaitFor(t, 10*time.Second, "the export lines", func() bool {
		for _, m := range re.FindAllStringSubmatch(stdout.String(), -1) {
			exports[m[1]] = m[2]
		}
		return len(exports) == 5
	})
	require.Equal(t, "spiffe://tether.test/tetherd", exports["TETHER_SERVER_ID"])
	require.True(t, strings.HasPrefix(exports["TETHER_SERVER"], "https://127.0.0.1:"))
	for _, f := range []string{"bundle.pem", "admin.pem", "admin.key", "user.pem", "user.key"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
	}

	client := func(cert, key string) *http.Client {
		c, err := tls.LoadX509KeyPair(cert, key)
		require.NoError(t, err)
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS13,
			InsecureSkipVerify: true, //nolint:gosec // checks the issuer, not the client
		}}}
	}
	post := func(c *http.Client) (int, []byte) {
		resp, err := c.Post(exports["TETHER_SERVER"]+api.PathSessions, "application/json", nil)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	status, body := post(client(exports["TETHER_SVID_CERT"], exports["TETHER_SVID_KEY"]))
	require.Equal(t, http.StatusCreated, status, string(body))
	var lr api.LoginResponse
	require.NoError(t, json.Unmarshal(body, &lr))
	require.Equal(t, "spiffe://tether.test/admin/dev", lr.Session.SPIFFEID)

	status, body = post(client(filepath.Join(dir, "user.pem"), filepath.Join(dir, "user.key")))
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, string(body), string(api.CodeNotAdmin))

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatal("tetherd dev did not stop")
	}
	require.Contains(t, stderr.String(), "tetherd.stopped")
	require.NotContains(t, stderr.String(), lr.Token[:16], "no token in the log")
}

// TestDevDirRefused: `tetherd dev --dir` refuses, as a usage error naming
// --dir and before writing anything, a folder that others can write (they
// could replace the admin's key or the bundle tether trusts), that is not
// the user's, or that is a symbolic link.
func TestDevDirRefused(t *testing.T) {
	devFails := func(t *testing.T, dir string, want ...string) {
		t.Helper()
		stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan int, 1)
		go func() {
			done <- runContext(ctx, []string{"dev", "--dir", dir, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"}, stdout, stderr)
		}()
		select {
		case code := <-done:
			require.Equal(t, 2, code, stderr.String())
		case <-time.After(10 * time.Second):
			cancel()
			<-done
			t.Fatalf("tetherd dev --dir %s did not refuse the folder; it printed:\n%s", dir, stdout)
		}
		require.Empty(t, stdout.String())
		line := stderr.String()
		require.True(t, strings.HasPrefix(line, "tetherd: --dir: "+dir+" ") && strings.Count(line, "\n") == 1, "one line naming --dir: %q", line)
		for _, w := range want {
			require.Contains(t, line, w)
		}
	}
	noFiles := func(t *testing.T, dir string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, entries, "nothing was written")
	}

	for _, perm := range []os.FileMode{0o777, 0o770, 0o702, 0o1777} {
		dir := filepath.Join(t.TempDir(), "dev")
		require.NoError(t, os.Mkdir(dir, 0o700))
		require.NoError(t, os.Chmod(dir, perm))
		devFails(t, dir, "is writable by other users", "chmod 700 "+dir)
		noFiles(t, dir)
	}

	target := filepath.Join(t.TempDir(), "target")
	require.NoError(t, os.Mkdir(target, 0o700))
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(target, link))
	devFails(t, link, "is a symbolic link")
	noFiles(t, target)

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	devFails(t, file, "is not a folder")

	// Not the user's: the owner it must have is a parameter, so that this
	// runs as any user; as root, a folder given away is refused end to end.
	mine := t.TempDir()
	err := devDir(mine, os.Getuid()+1)
	require.Equal(t, cli.ExitUsage, cli.ExitCode(err))
	require.Equal(t, fmt.Sprintf("--dir: %s belongs to uid %d, not to you (uid %d): give a folder of your own", mine, os.Getuid(), os.Getuid()+1), err.Error())
	t.Run("foreign-owner", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to chown a folder to another user")
		}
		theirs := filepath.Join(t.TempDir(), "theirs")
		require.NoError(t, os.Mkdir(theirs, 0o700))
		require.NoError(t, os.Chown(theirs, 4242, -1))
		devFails(t, theirs, "belongs to uid 4242, not to you (uid 0)")
		noFiles(t, theirs)
	})

	// Accepted: the user's own folder that others cannot write, and a
	// missing one, made 0700 with its parents.
	for _, perm := range []os.FileMode{0o700, 0o750, 0o755} {
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, perm))
		require.NoError(t, devDir(dir, os.Getuid()), "%04o", perm)
	}
	missing := filepath.Join(t.TempDir(), "a", "dev")
	require.NoError(t, devDir(missing, os.Getuid()))
	fi, err := os.Lstat(missing)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}
