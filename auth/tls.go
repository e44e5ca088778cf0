package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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
//
// Each connection's handshake remembers the bundle it verified the chain
// against, so that the Middleware (with ConnContext) does not verify the
// same chain against the same bundle a second time at the connection's
// first request; it still verifies it again as soon as the bundle differs.
func ServerTLSConfig(svids x509svid.Source, bundles x509bundle.Source) *tls.Config {
	cache := &certCache{src: svids}
	base := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		MaxVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cache.get() },
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyClient(cs, bundles)
			return err
		},
	}
	cfg := base.Clone()
	// A handshake gets base with a VerifyConnection that knows its
	// connection (crypto/tls keeps the session ticket keys of cfg).
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		conn := hello.Conn
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			b, err := verifyClient(cs, bundles)
			if err == nil {
				handshakes.remember(conn, b)
			}
			return err
		}
		return c, nil
	}
	return cfg
}

// verifyClient verifies a handshake's client chain against the bundle of
// its trust domain in bundles and checks its leaf; it returns that bundle.
func verifyClient(cs tls.ConnectionState, bundles x509bundle.Source) (*x509bundle.Bundle, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("auth: client certificate required")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return nil, fmt.Errorf("auth: client certificate refused: %w", err)
	}
	b, err := bundles.GetX509BundleForTrustDomain(id.TrustDomain())
	if err != nil || b == nil {
		return nil, fmt.Errorf("auth: client certificate refused: no bundle for %q", id.TrustDomain())
	}
	if _, _, err := x509svid.Verify(cs.PeerCertificates, b); err != nil {
		return nil, fmt.Errorf("auth: client certificate refused: %w", err)
	}
	if err := checkClientLeaf(cs.PeerCertificates[0]); err != nil {
		return nil, fmt.Errorf("auth: client certificate refused: %w", err)
	}
	return b, nil
}

// maxRemembered bounds handshakeBundles: past it, what is remembered is
// forgotten, and those connections' first requests verify their chains
// again, as without it.
const maxRemembered = 4096

// handshakeBundles remembers, for connections whose handshake
// ServerTLSConfig verified, the bundle it verified the chain against, until
// the connection's first request takes it (a connection that closes before
// any request leaves its entry until the map is full and forgotten).
type handshakeBundles struct {
	mu sync.Mutex
	m  map[net.Conn]*x509bundle.Bundle
}

var handshakes = &handshakeBundles{m: make(map[net.Conn]*x509bundle.Bundle)}

func (h *handshakeBundles) remember(c net.Conn, b *x509bundle.Bundle) {
	if c == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.m) >= maxRemembered {
		clear(h.m)
	}
	h.m[c] = b
}

// take returns and forgets what c's handshake verified against, or nil.
func (h *handshakeBundles) take(c net.Conn) *x509bundle.Bundle {
	if c == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.m[c]
	delete(h.m, c)
	return b
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
