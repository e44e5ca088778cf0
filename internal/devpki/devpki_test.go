package devpki_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/devpki"
	"github.com/tetherproject/tether/svid"
)

func TestCA(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("tether.test")
	ca, err := devpki.NewCA(td, time.Hour)
	require.NoError(t, err)
	id := spiffeid.RequireFromString("spiffe://tether.test/admin/dev")
	s, err := ca.Issue(id, time.Hour)
	require.NoError(t, err)
	gotID, _, err := x509svid.Verify(s.Certificates, ca.Bundle())
	require.NoError(t, err)
	require.Equal(t, id, gotID)

	dir := t.TempDir()
	require.NoError(t, devpki.WriteSVID(s, filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")))
	require.NoError(t, ca.WriteBundle(filepath.Join(dir, "bundle.pem")))
	for _, f := range []string{"a.pem", "a.key", "bundle.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	src, err := svid.NewFileSource(svid.FileConfig{CertFile: filepath.Join(dir, "a.pem"), KeyFile: filepath.Join(dir, "a.key"), BundleFile: filepath.Join(dir, "bundle.pem")})
	require.NoError(t, err)
	require.NoError(t, src.Close())
}

// TestIssueLeaf: an issued leaf is what SPIRE issues: one URI SAN, not a CA,
// for digital signatures, TLS servers and clients, backdated a minute
// against clock skew, ending ttl from now.
func TestIssueLeaf(t *testing.T) {
	ca, err := devpki.NewCA(spiffeid.RequireTrustDomainFromString("example.org"), time.Hour)
	require.NoError(t, err)
	id := spiffeid.RequireFromString("spiffe://example.org/a")
	before := time.Now().Truncate(time.Second)
	s, err := ca.Issue(id, 2*time.Hour)
	require.NoError(t, err)
	after := time.Now()
	leaf := s.Certificates[0]

	require.Equal(t, id, s.ID)
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, id.String(), leaf.URIs[0].String())
	require.False(t, leaf.IsCA)
	require.NotZero(t, leaf.KeyUsage&x509.KeyUsageDigitalSignature)
	require.Zero(t, leaf.KeyUsage&x509.KeyUsageCertSign)
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.WithinRange(t, leaf.NotBefore, before.Add(-time.Minute), after.Add(-time.Minute))
	require.WithinRange(t, leaf.NotAfter, before.Add(2*time.Hour), after.Add(2*time.Hour))

	other, err := ca.Issue(id, 2*time.Hour)
	require.NoError(t, err)
	require.NotEqual(t, leaf.SerialNumber, other.Certificates[0].SerialNumber, "a fresh serial number each")
}
