package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ServerTLSConfig is the API's TLS configuration: TLS 1.3 only; the server's
// certificate is read from svids at every handshake (so rotation needs no
// restart); a client certificate is required and must be an X.509 SVID that
// chains to a bundle of bundles for its own trust domain, unexpired, with
// exactly one SPIFFE ID, not a CA, with the digitalSignature key usage and,
// if it lists extended key usages, clientAuth among them.
//
// The check runs in VerifyConnection, which Go calls on every handshake,
// resumed ones included (VerifyPeerCertificate is skipped on resumption), so
// a session ticket cannot smuggle in a certificate that has since expired or
// lost its trust.
func ServerTLSConfig(svids x509svid.Source, bundles x509bundle.Source) *tls.Config {
	cache := &certCache{src: svids}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		MaxVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cache.get() },
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("auth: client certificate required")
			}
			if _, _, err := x509svid.Verify(cs.PeerCertificates, bundles); err != nil {
				return fmt.Errorf("auth: client certificate refused: %w", err)
			}
			if err := checkClientLeaf(cs.PeerCertificates[0]); err != nil {
				return fmt.Errorf("auth: client certificate refused: %w", err)
			}
			return nil
		},
	}
}

// certCache turns the current SVID into a tls.Certificate once per SVID.
type certCache struct {
	src  x509svid.Source
	mu   sync.Mutex
	last *x509svid.SVID
	cert *tls.Certificate
}

func (c *certCache) get() (*tls.Certificate, error) {
	svid, err := c.src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("auth: no server SVID: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if svid == c.last && c.cert != nil {
		return c.cert, nil
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, x := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, x.Raw)
	}
	c.last, c.cert = svid, cert
	return cert, nil
}
