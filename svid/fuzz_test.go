package svid

// Fuzz tests of the PEM parsing behind --svid-cert, --svid-key and --bundle,
// which spiffe-helper (or an attacker who can write there) rewrites while
// tetherd runs. Seeds are in testdata/fuzz/FuzzXxx and run in every `go
// test`; scripts/fuzz runs each fuzzer for a bounded time.

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/devpki"
)

// fzPEM is a valid SVID (chain, key) and bundle of a fresh dev CA, as PEM.
func fzPEM(tb testing.TB, td string) (certPEM, keyPEM, bundlePEM []byte) {
	tb.Helper()
	ca, err := devpki.NewCA(spiffeid.RequireTrustDomainFromString(td), time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ca.Issue(spiffeid.RequireFromString("spiffe://"+td+"/tetherd"), time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, keyPEM, err = s.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return certPEM, keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// FuzzParseFiles parses any three files. What it accepts is a usable
// identity: a leaf with exactly one SPIFFE ID, a private key that matches
// it, and a bundle of the same trust domain with at least one CA.
func FuzzParseFiles(f *testing.F) {
	c, k, b := fzPEM(f, "example.org")
	_, otherKey, otherBundle := fzPEM(f, "other.org")
	f.Add(c, k, b)
	f.Add(c, otherKey, b)
	f.Add(c, k, otherBundle)
	f.Add(c[:len(c)/2], k, b)
	f.Add(c, k[:len(k)-10], b)
	f.Add(append(append([]byte{}, c...), c...), k, append(append([]byte{}, b...), b...))
	cfg := FileConfig{CertFile: "cert.pem", KeyFile: "key.pem", BundleFile: "bundle.pem"}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM, bundlePEM []byte) {
		s, bundle, err := parseFiles(cfg, [3][]byte{certPEM, keyPEM, bundlePEM})
		if err != nil {
			if s != nil || bundle != nil {
				t.Fatal("an error with a result")
			}
			return
		}
		if s.ID.IsZero() || len(s.Certificates) == 0 {
			t.Fatalf("accepted an SVID without ID or certificate: %+v", s)
		}
		leaf := s.Certificates[0]
		id, err := x509svid.IDFromCert(leaf)
		if err != nil || id != s.ID || len(leaf.URIs) != 1 {
			t.Fatalf("leaf IDs %v, SVID ID %s: %v", leaf.URIs, s.ID, err)
		}
		if leaf.IsCA {
			t.Fatal("accepted a CA certificate as the leaf")
		}
		pub, ok := s.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(leaf.PublicKey) {
			t.Fatal("accepted a key that does not match the leaf")
		}
		if bundle.TrustDomain() != s.ID.TrustDomain() || len(bundle.X509Authorities()) == 0 {
			t.Fatalf("bundle of %s with %d CAs for an SVID of %s", bundle.TrustDomain(), len(bundle.X509Authorities()), s.ID)
		}
	})
}

// FuzzFileSourceReload writes any content over a good identity's files and
// reloads: either the new content is a usable identity and is taken, or the
// reload fails and the last good identity stays, unchanged.
func FuzzFileSourceReload(f *testing.F) {
	c, k, b := fzPEM(f, "example.org")
	c2, k2, _ := fzPEM(f, "example.org")
	f.Add(c, k, b)
	f.Add(c[:len(c)-40], k, b) // half-written
	f.Add([]byte("garbage"), k, b)
	f.Add(c2, k, b) // new certificate, old key
	f.Add(c, k2, b)
	f.Add([]byte{}, []byte{}, []byte{})
	dir := f.TempDir()
	files := FileConfig{
		CertFile: filepath.Join(dir, "svid.pem"), KeyFile: filepath.Join(dir, "svid.key"), BundleFile: filepath.Join(dir, "bundle.pem"),
		Interval: time.Hour, // only the fuzz body reloads
	}
	write := func(tb testing.TB, cert, key, bundle []byte) {
		tb.Helper()
		for path, data := range map[string][]byte{files.CertFile: cert, files.KeyFile: key, files.BundleFile: bundle} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				tb.Fatal(err)
			}
		}
	}
	write(f, c, k, b)
	src, err := NewFileSource(files)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = src.Close() })
	f.Fuzz(func(t *testing.T, cert, key, bundle []byte) {
		// Back to the good identity first (a no-op if it is current).
		write(t, c, k, b)
		if err := src.Reload(); err != nil {
			t.Fatalf("reloading the good identity: %v", err)
		}
		before, _ := src.GetX509SVID()

		write(t, cert, key, bundle)
		err := src.Reload()
		after, _ := src.GetX509SVID()
		if err != nil {
			if after != before {
				t.Fatalf("a failed reload (%v) replaced the identity", err)
			}
			return
		}
		if bytes.Equal(cert, c) && bytes.Equal(key, k) && bytes.Equal(bundle, b) {
			if after != before {
				t.Fatal("an unchanged identity was replaced")
			}
			return
		}
		if after == nil || len(after.Certificates) == 0 {
			t.Fatal("a successful reload left no SVID")
		}
		if _, err := src.GetX509BundleForTrustDomain(after.ID.TrustDomain()); err != nil {
			t.Fatalf("no bundle for the new SVID's trust domain: %v", err)
		}
	})
}
