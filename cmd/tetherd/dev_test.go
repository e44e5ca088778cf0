package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
