package svid_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/svid"
)

func TestFingerprint(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	leaf := ca.Issue(t, "spiffe://example.org/a").Certificates[0]
	sum := sha256.Sum256(leaf.Raw)
	fp := svid.Fingerprint(leaf)
	require.Equal(t, base64.RawURLEncoding.EncodeToString(sum[:]), fp)
	require.Len(t, fp, 43, "32 bytes, base64url without padding")
	require.NotContains(t, fp, "=")
}

// reloads records the outcome of every reload.
type reloads struct {
	mu   sync.Mutex
	errs []error
	ch   chan error
}

func newReloads() *reloads { return &reloads{ch: make(chan error, 16)} }

func (r *reloads) record(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.ch <- err
}

func (r *reloads) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return nil
	}
}

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "example.org")
	first := ca.Issue(t, "spiffe://example.org/tetherd")
	files := ca.WriteFiles(t, dir, "svid", first)
	rl := newReloads()
	src, err := svid.NewFileSource(svid.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		Interval: 10 * time.Millisecond, OnReload: rl.record,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	got, err := src.GetX509SVID()
	require.NoError(t, err)
	require.Equal(t, first.Certificates[0].Raw, got.Certificates[0].Raw)
	b, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org"))
	require.NoError(t, err)
	require.True(t, b.HasX509Authority(ca.Cert))
	_, err = src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org"))
	require.Error(t, err)

	// Rotation, as spiffe-helper writes it: picked up without a restart.
	second := ca.Issue(t, "spiffe://example.org/tetherd")
	ca.WriteFiles(t, dir, "svid", second)
	require.NoError(t, rl.next(t))
	<-src.Updated()
	got, _ = src.GetX509SVID()
	require.Equal(t, second.Certificates[0].Raw, got.Certificates[0].Raw)

	// Garbage: the last good identity stays, the failure is reported once.
	require.NoError(t, os.WriteFile(files.Cert, []byte("garbage"), 0o600))
	require.ErrorContains(t, rl.next(t), files.Cert)
	got, _ = src.GetX509SVID()
	require.Equal(t, second.Certificates[0].Raw, got.Certificates[0].Raw)

	// Half-written: the first half of a PEM file.
	pemBytes, keyBytes, err := ca.Issue(t, "spiffe://example.org/tetherd").Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(files.Cert, pemBytes[:len(pemBytes)/2], 0o600))
	require.Error(t, rl.next(t))
	// A certificate with someone else's key.
	require.NoError(t, os.WriteFile(files.Cert, pemBytes, 0o600))
	require.ErrorContains(t, rl.next(t), "key")
	got, _ = src.GetX509SVID()
	require.Equal(t, second.Certificates[0].Raw, got.Certificates[0].Raw)

	// The key arrives: the pair is good again.
	require.NoError(t, os.WriteFile(files.Key, keyBytes, 0o600))
	require.NoError(t, rl.next(t))
	got, _ = src.GetX509SVID()
	require.Equal(t, pemBytes, pemOf(t, got))

	// Reload (SIGHUP) with nothing changed is a no-op.
	require.NoError(t, src.Reload())
	require.NoError(t, src.Close())
	require.NoError(t, src.Close(), "Close is safe twice")
}

func pemOf(t *testing.T, s interface {
	Marshal() ([]byte, []byte, error)
}) []byte {
	t.Helper()
	c, _, err := s.Marshal()
	require.NoError(t, err)
	return c
}

// TestNewFileSourceErrors: a file that cannot be loaded is named in the
// message, and the *FileError says which one is at fault (both certificate
// and key when they do not match).
func TestNewFileSourceErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, dir, "svid", ca.Issue(t, "spiffe://example.org/tetherd"))
	other := testpki.NewCA(t, "example.org").WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, "spiffe://example.org/x"))
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"), 0o600))
	notSPIFFE := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, "", testpki.WithURIs("https://example.org/x")))
	encrypted := filepath.Join(dir, "encrypted.key")
	require.NoError(t, os.WriteFile(encrypted, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nnope\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600))
	empty := filepath.Join(dir, "empty.pem")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	for _, tc := range []struct {
		name              string
		cert, key, bundle string
		want              string
		files             svid.Files
	}{
		{"fail/missing-cert", filepath.Join(dir, "nope.pem"), files.Key, files.Bundle, "nope.pem", svid.FileCert},
		{"fail/missing-key", files.Cert, filepath.Join(dir, "nope.key"), files.Bundle, "nope.key", svid.FileKey},
		{"fail/missing-bundle", files.Cert, files.Key, filepath.Join(dir, "nope-bundle.pem"), "nope-bundle.pem", svid.FileBundle},
		{"fail/garbage-cert", garbage, files.Key, files.Bundle, "garbage", svid.FileCert},
		{"fail/garbage-key", files.Cert, garbage, files.Bundle, "garbage", svid.FileKey},
		{"fail/encrypted-key", files.Cert, encrypted, files.Bundle, "encrypted", svid.FileKey},
		{"fail/key-mismatch", files.Cert, other.Key, files.Bundle, "key", svid.FileCert | svid.FileKey},
		{"fail/garbage-bundle", files.Cert, files.Key, garbage, "garbage", svid.FileBundle},
		{"fail/empty-bundle", files.Cert, files.Key, empty, "empty.pem", svid.FileBundle},
		{"fail/not-spiffe", notSPIFFE.Cert, notSPIFFE.Key, files.Bundle, "svid", svid.FileCert},
		{"fail/not-spiffe-other-key", notSPIFFE.Cert, files.Key, files.Bundle, "svid", svid.FileCert | svid.FileKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svid.NewFileSource(svid.FileConfig{CertFile: tc.cert, KeyFile: tc.key, BundleFile: tc.bundle})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			var fe *svid.FileError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.files, fe.Files)
		})
	}
}

func TestUsable(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	now := time.Now()
	ok := ca.Issue(t, "spiffe://example.org/a")
	expired := ca.Issue(t, "spiffe://example.org/a", testpki.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour)))
	require.NoError(t, svid.Usable(&svid.StaticSource{SVID: ok}, now))
	require.ErrorContains(t, svid.Usable(&svid.StaticSource{SVID: expired}, now), "expired")
	require.ErrorContains(t, svid.Usable(&svid.StaticSource{SVID: ok}, now.Add(2*time.Hour)), "expired")
}

func TestNewWorkloadSourceTimesOut(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nobody.sock") // nothing listens here
	start := time.Now()
	var logs testutil.Buffer
	_, err := svid.NewWorkloadSource(context.Background(), "unix://"+sock, 300*time.Millisecond,
		slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.Error(t, err)
	require.Contains(t, logs.String(), `"msg":"workloadapi"`, "go-spiffe's retries are logged, not silent")
	require.Less(t, time.Since(start), 10*time.Second)
	require.True(t, strings.Contains(err.Error(), "registration entry") || strings.Contains(err.Error(), sock), err.Error())
}
