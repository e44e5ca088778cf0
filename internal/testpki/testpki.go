// Package testpki makes SPIFFE test PKI at run time: a trust domain CA and
// X.509 SVIDs signed by it, in memory or written as PEM files. It is for tests
// only; nothing in tetherd imports it.
package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/devpki"
)

// CA is a trust domain's certificate authority.
type CA struct {
	*devpki.CA

	mu            sync.Mutex
	lastNotBefore time.Time // of the last leaf Issue made
}

// NewCA makes a CA for the trust domain name td (for example "example.org").
func NewCA(tb testing.TB, td string) *CA {
	tb.Helper()
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	ca, err := devpki.NewCA(trustDomain, 24*time.Hour)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	return &CA{CA: ca}
}

// Option changes the template of a leaf before it is signed.
type Option func(*x509.Certificate)

// WithValidity sets the leaf's NotBefore and NotAfter.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = notBefore, notAfter }
}

// WithURIs replaces the leaf's URI SANs (to make leaves with zero or two IDs).
func WithURIs(uris ...string) Option {
	return func(c *x509.Certificate) {
		c.URIs = nil
		for _, u := range uris {
			parsed, err := url.Parse(u)
			if err == nil {
				c.URIs = append(c.URIs, parsed)
			}
		}
	}
}

// WithIPs adds IP address SANs beside the SPIFFE ID, as a server SVID may
// carry them for clients that check a host (etcd checks its peers' IPs).
func WithIPs(ips ...net.IP) Option {
	return func(c *x509.Certificate) { c.IPAddresses = append(c.IPAddresses, ips...) }
}

// AsCA makes the leaf a CA certificate (which an X.509 SVID must not be).
func AsCA() Option {
	return func(c *x509.Certificate) {
		c.IsCA = true
		c.BasicConstraintsValid = true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		c.ExtKeyUsage = nil
	}
}

// Issue signs a leaf X.509 SVID for the SPIFFE ID id (e.g.
// "spiffe://example.org/admin/alice"), valid for an hour unless an option says
// otherwise. Options may make it an invalid SVID on purpose.
//
// Each leaf's NotBefore is a whole second strictly after the previous leaf's
// of the same CA (unless an option sets it), as an SVID issued later by SPIRE
// has: tetherd rebinds a session only to a newer leaf, and tests rotate SVIDs
// faster than once a second. NotBefore is backdated up to notBeforeSlack to
// leave room for that without ever lying in the future.
func (ca *CA) Issue(tb testing.TB, id string, opts ...Option) *x509svid.SVID {
	tb.Helper()
	tmpl := devpki.LeafTemplate(spiffeid.RequireFromString("spiffe://"+ca.TD.Name()+"/placeholder"), time.Hour)
	tmpl.Subject.Organization = []string{"tether test"}
	tmpl.NotBefore = ca.nextNotBefore(tb)
	WithURIs(id)(tmpl)
	for _, o := range opts {
		o(tmpl)
	}
	cert, key, err := ca.Sign(tmpl)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	s := &x509svid.SVID{Certificates: []*x509.Certificate{cert}, PrivateKey: key}
	if parsed, err := spiffeid.FromString(id); err == nil && len(tmpl.URIs) == 1 {
		s.ID = parsed
	}
	return s
}

// notBeforeSlack is how far back NotBefore may start: a CA can issue this
// many leaves (one per second of it) in a burst before NotBefore would pass
// the present.
const notBeforeSlack = 10 * time.Minute

// nextNotBefore is the NotBefore of the next leaf: the later of now minus
// notBeforeSlack and a second after the previous leaf's, in whole seconds
// (an X.509 time has no finer resolution).
func (ca *CA) nextNotBefore(tb testing.TB) time.Time {
	tb.Helper()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := time.Now().Truncate(time.Second)
	nb := now.Add(-notBeforeSlack)
	if !ca.lastNotBefore.IsZero() && !nb.After(ca.lastNotBefore) {
		nb = ca.lastNotBefore.Add(time.Second)
	}
	if nb.After(now) {
		tb.Fatalf("testpki: more than %d leaves issued within %s: the next NotBefore would be in the future", int(notBeforeSlack/time.Second), notBeforeSlack)
	}
	ca.lastNotBefore = nb
	return nb
}

// TLSCertificate turns an SVID into a tls.Certificate for a client or server.
func TLSCertificate(s *x509svid.SVID) tls.Certificate {
	c := tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	for _, cert := range s.Certificates {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// Files are the paths of an SVID written as PEM.
type Files struct {
	Cert, Key, Bundle string
}

// WriteFiles writes the SVID's chain, its PKCS#8 key and the CA bundle as PEM
// files named prefix.pem, prefix.key and bundle.pem in dir.
func (ca *CA) WriteFiles(tb testing.TB, dir, prefix string, s *x509svid.SVID) Files {
	tb.Helper()
	f := Files{
		Cert:   filepath.Join(dir, prefix+".pem"),
		Key:    filepath.Join(dir, prefix+".key"),
		Bundle: filepath.Join(dir, "bundle.pem"),
	}
	certPEM, keyPEM, err := s.Marshal()
	if err != nil {
		tb.Fatalf("testpki: marshal SVID: %v", err)
	}
	bundlePEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	for path, data := range map[string][]byte{f.Cert: certPEM, f.Key: keyPEM, f.Bundle: bundlePEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			tb.Fatalf("testpki: %v", err)
		}
	}
	return f
}

// Source is an x509svid.Source whose SVID a test replaces, as a
// workloadapi.X509Source does when the agent rotates it.
type Source struct {
	mu   sync.Mutex
	svid *x509svid.SVID
}

// NewSource returns a source serving s.
func NewSource(s *x509svid.SVID) *Source { return &Source{svid: s} }

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, nil
}

// SVID returns the SVID served now.
func (s *Source) SVID() *x509svid.SVID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid
}

// Set replaces the SVID served.
func (s *Source) Set(v *x509svid.SVID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid = v
}
