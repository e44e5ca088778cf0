package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/pkg/api"
)

func TestRelative(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"},
		{300 * time.Millisecond, "just now"},
		{-300 * time.Millisecond, "just now"},
		{45 * time.Second, "in 45s"},
		{-12 * time.Second, "12s ago"},
		{15 * time.Minute, "in 15m00s"},
		{14*time.Minute + 59*time.Second + 900*time.Millisecond, "in 14m59s"},
		{8*time.Hour - time.Second, "in 7h59m"},
		{8 * time.Hour, "in 8h00m"},
		{-90 * time.Minute, "1h30m ago"},
		{50 * time.Hour, "in 2d2h"},
	} {
		require.Equal(t, tc.want, relative(now.Add(tc.d), now), tc.d.String())
	}
	require.Equal(t, "-", relative(time.Time{}, now))
}

func TestSessionsTable(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	p := &printer{w: &b, now: func() time.Time { return now }}
	require.NoError(t, p.sessions([]api.Session{
		{SessionID: "short", SPIFFEID: "spiffe://example.org/a", CreatedAt: now.Add(-time.Hour), LastUsedAt: now, ExpiresAt: now.Add(7 * time.Hour), IdleExpiresAt: now.Add(15 * time.Minute)},
		{SessionID: "a-much-longer-session-id", SPIFFEID: "spiffe://example.org/admin/b", CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(8 * time.Hour), IdleExpiresAt: now.Add(15 * time.Minute)},
	}))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 3)
	col := strings.Index(lines[0], "SPIFFE ID")
	for _, l := range lines[1:] {
		require.Equal(t, col, strings.Index(l, "spiffe://"), "aligned:\n%s", b.String())
	}
	require.Contains(t, lines[1], "1h00m ago")
	require.Contains(t, lines[1], "in 7h00m")

	b.Reset()
	require.NoError(t, p.sessions(nil))
	require.Equal(t, "no live sessions\n", b.String())
	b.Reset()
	p.json = true
	require.NoError(t, p.sessions([]api.Session{}))
	require.JSONEq(t, `{"sessions": []}`, b.String())
}

func TestFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "cache")
	id := spiffeid.RequireFromString("spiffe://example.org/admin/alice")
	s := newFileStore(dir, "https://127.0.0.1:8443", id)

	tok, err := s.LoadToken()
	require.NoError(t, err)
	require.Empty(t, tok)
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "loading creates nothing")

	require.NoError(t, s.SaveToken("t1"))
	require.NoError(t, s.SaveToken("t2"))
	tok, err = s.LoadToken()
	require.NoError(t, err)
	require.Equal(t, "t2", tok)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the temporary file was renamed")
	fi, err := entries[0].Info()
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.NotContains(t, s.String(), "t2")

	// One file per server and identity.
	other := newFileStore(dir, "https://127.0.0.1:9443", id)
	tok, err = other.LoadToken()
	require.NoError(t, err)
	require.Empty(t, tok)
	require.NotEqual(t, s.path, newFileStore(dir, "https://127.0.0.1:8443", spiffeid.RequireFromString("spiffe://example.org/admin/bob")).path)

	// A damaged file is no token.
	require.NoError(t, os.WriteFile(s.path, []byte("{not json"), 0o600))
	tok, err = s.LoadToken()
	require.NoError(t, err)
	require.Empty(t, tok)

	require.NoError(t, s.DeleteToken())
	require.NoError(t, s.DeleteToken(), "deleting nothing is fine")
	require.NoFileExists(t, s.path)
}

func TestCacheDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	d, err := cacheDir(env(map[string]string{"TETHER_CACHE_DIR": "/c", "XDG_RUNTIME_DIR": "/run/user/1"}))
	require.NoError(t, err)
	require.Equal(t, "/c", d)
	d, err = cacheDir(env(map[string]string{"XDG_RUNTIME_DIR": "/run/user/1"}))
	require.NoError(t, err)
	require.Equal(t, "/run/user/1/tether", d)
	home, err := os.UserHomeDir()
	require.NoError(t, err)
	d, err = cacheDir(env(nil))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(home, ".cache", "tether"), d)
}

// TestCacheFolderChecks: the token cache folder must be a folder of the
// user's (not a symbolic link) that group and others cannot write; a token
// in any other is never read, and none is written there.
func TestCacheFolderChecks(t *testing.T) {
	id := spiffeid.RequireFromString("spiffe://example.org/admin/alice")
	store := func(t *testing.T, perm os.FileMode) *fileStore {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "cache")
		require.NoError(t, os.Mkdir(dir, 0o700))
		s := newFileStore(dir, "https://127.0.0.1:8443", id)
		require.NoError(t, os.WriteFile(s.path, []byte(`{"token":"planted"}`), 0o600))
		require.NoError(t, os.Chmod(dir, perm))
		return s
	}
	for _, perm := range []os.FileMode{0o700, 0o750, 0o755, 0o711, 0o500} {
		s := store(t, perm)
		require.NoError(t, s.prepare(false), "%04o", perm)
		tok, err := s.LoadToken()
		require.NoError(t, err, "%04o", perm)
		require.Equal(t, "planted", tok, "%04o", perm)
	}
	for _, perm := range []os.FileMode{0o720, 0o702, 0o770, 0o777, 0o1777} {
		s := store(t, perm)
		for _, create := range []bool{false, true} {
			err := s.prepare(create)
			require.Error(t, err, "%04o", perm)
			require.Equal(t, fmt.Sprintf("the token cache folder %s is writable by other users (mode %04o): chmod 700 %s, or set TETHER_CACHE_DIR", s.dir, perm&0o777, s.dir), err.Error())
			assertFailure(t, err)
		}
		tok, err := s.LoadToken()
		require.Error(t, err, "%04o", perm)
		require.Empty(t, tok, "%04o: the token is not read", perm)
		require.Error(t, s.SaveToken("t"), "%04o", perm)
	}

	// Not the user's: the owner it must have is a parameter, so that this
	// runs as any user (and as root, who owns every folder it makes).
	s := store(t, 0o700)
	s.uid = os.Getuid() + 1
	tok, err := s.LoadToken()
	require.ErrorContains(t, err, fmt.Sprintf("belongs to uid %d, not to you (uid %d): set TETHER_CACHE_DIR to a folder of your own", os.Getuid(), s.uid))
	require.Empty(t, tok)
	require.Error(t, s.prepare(true))

	// A symbolic link to a good folder is not followed; nor is a file a
	// folder.
	s = store(t, 0o700)
	link := filepath.Join(filepath.Dir(s.dir), "link")
	require.NoError(t, os.Symlink(s.dir, link))
	viaLink := newFileStore(link, "https://127.0.0.1:8443", id)
	tok, err = viaLink.LoadToken()
	require.ErrorContains(t, err, "token cache folder "+link+" is a symbolic link")
	require.Empty(t, tok)
	require.Error(t, viaLink.prepare(true))
	require.Error(t, viaLink.SaveToken("t"))
	notDir := newFileStore(s.path, "https://127.0.0.1:8443", id)
	require.ErrorContains(t, notDir.prepare(false), "is not a folder")

	// Missing: made 0700 with its parents when a command may log in, left
	// alone otherwise.
	deep := newFileStore(filepath.Join(t.TempDir(), "a", "b", "cache"), "https://127.0.0.1:8443", id)
	require.NoError(t, deep.prepare(false))
	require.NoDirExists(t, deep.dir)
	require.NoError(t, deep.prepare(true))
	fi, err := os.Lstat(deep.dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

// TestCacheFileChecks: a cache file must be a regular file of the user's
// that group and others can neither read nor write; any other is not read.
func TestCacheFileChecks(t *testing.T) {
	id := spiffeid.RequireFromString("spiffe://example.org/admin/alice")
	s := newFileStore(filepath.Join(t.TempDir(), "cache"), "https://127.0.0.1:8443", id)
	require.NoError(t, s.SaveToken("mine"))
	load := func() (string, error) {
		t.Helper()
		require.Equal(t, s.prepare(true), s.prepare(false), "prepare checks the file as LoadToken does")
		return s.LoadToken()
	}
	for _, perm := range []os.FileMode{0o640, 0o644, 0o604, 0o660, 0o602, 0o666} {
		require.NoError(t, os.Chmod(s.path, perm))
		tok, err := load()
		require.Error(t, err, "%04o", perm)
		require.Equal(t, fmt.Sprintf("the token cache file %s is open to other users (mode %04o): chmod 600 %s", s.path, perm, s.path), err.Error())
		assertFailure(t, err)
		require.Empty(t, tok)
	}
	for _, perm := range []os.FileMode{0o600, 0o400} {
		require.NoError(t, os.Chmod(s.path, perm))
		tok, err := load()
		require.NoError(t, err)
		require.Equal(t, "mine", tok)
	}

	// Not the user's: the owner it must have is a parameter, so that this
	// runs as any user (the folder's owner is checked first, so checkFile is
	// called by itself here).
	fi, err := os.Lstat(s.path)
	require.NoError(t, err)
	err = checkFile(s.path, fi, os.Getuid()+1)
	require.ErrorContains(t, err, fmt.Sprintf("the token cache file %s belongs to uid %d, not to you (uid %d): remove it (rm %s)", s.path, os.Getuid(), os.Getuid()+1, s.path))
	assertFailure(t, err)

	// A symbolic link, even to a good file of the user's, is not followed;
	// nor is a folder read as a file.
	elsewhere := filepath.Join(t.TempDir(), "token.json")
	require.NoError(t, os.Rename(s.path, elsewhere))
	require.NoError(t, os.Symlink(elsewhere, s.path))
	tok, err := load()
	require.ErrorContains(t, err, "token cache file "+s.path+" is a symbolic link")
	require.Empty(t, tok)
	require.NoError(t, os.Remove(s.path))
	require.NoError(t, os.Mkdir(s.path, 0o700))
	_, err = load()
	require.ErrorContains(t, err, "is not a regular file")
}

// assertFailure: err is a failure (exit 1), not a usage error.
func assertFailure(t *testing.T, err error) {
	t.Helper()
	var ce *cli.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, cli.ExitFailure, ce.Code)
}
