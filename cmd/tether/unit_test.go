package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		assert.Equal(t, tc.want, relative(now.Add(tc.d), now), tc.d.String())
	}
	assert.Equal(t, "-", relative(time.Time{}, now))
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
		assert.Equal(t, col, strings.Index(l, "spiffe://"), "aligned:\n%s", b.String())
	}
	assert.Contains(t, lines[1], "1h00m ago")
	assert.Contains(t, lines[1], "in 7h00m")

	b.Reset()
	require.NoError(t, p.sessions(nil))
	assert.Equal(t, "no live sessions\n", b.String())
	b.Reset()
	p.json = true
	require.NoError(t, p.sessions([]api.Session{}))
	assert.JSONEq(t, `{"sessions": []}`, b.String())
}

func TestFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "cache")
	id := spiffeid.RequireFromString("spiffe://example.org/admin/alice")
	s := newFileStore(dir, "https://127.0.0.1:8443", id)

	tok, err := s.LoadToken()
	require.NoError(t, err)
	assert.Empty(t, tok)
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "loading creates nothing")

	require.NoError(t, s.SaveToken("t1"))
	require.NoError(t, s.SaveToken("t2"))
	tok, err = s.LoadToken()
	require.NoError(t, err)
	assert.Equal(t, "t2", tok)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the temporary file was renamed")
	fi, err := entries[0].Info()
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.NotContains(t, s.String(), "t2")

	// One file per server and identity.
	other := newFileStore(dir, "https://127.0.0.1:9443", id)
	tok, err = other.LoadToken()
	require.NoError(t, err)
	assert.Empty(t, tok)
	assert.NotEqual(t, s.path, newFileStore(dir, "https://127.0.0.1:8443", spiffeid.RequireFromString("spiffe://example.org/admin/bob")).path)

	// A damaged file is no token.
	require.NoError(t, os.WriteFile(s.path, []byte("{not json"), 0o600))
	tok, err = s.LoadToken()
	require.NoError(t, err)
	assert.Empty(t, tok)

	require.NoError(t, s.DeleteToken())
	require.NoError(t, s.DeleteToken(), "deleting nothing is fine")
	assert.NoFileExists(t, s.path)
}

func TestCacheDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	d, err := cacheDir(env(map[string]string{"TETHER_CACHE_DIR": "/c", "XDG_RUNTIME_DIR": "/run/user/1"}))
	require.NoError(t, err)
	assert.Equal(t, "/c", d)
	d, err = cacheDir(env(map[string]string{"XDG_RUNTIME_DIR": "/run/user/1"}))
	require.NoError(t, err)
	assert.Equal(t, "/run/user/1/tether", d)
	home, err := os.UserHomeDir()
	require.NoError(t, err)
	d, err = cacheDir(env(nil))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(home, ".cache", "tether"), d)
}
