package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// Reasons of the refusals of a caller's certificate, as logged and counted.
const (
	reasonNoCertificate = "no_certificate"
	reasonNotSVID       = "not_client_svid"
	reasonLeafExpired   = "leaf_expired"
	reasonUntrusted     = "untrusted"
	reasonUnverified    = "unverified"
)

// peerRefusal is a refusal of the caller's certificate: 401 invalid_token,
// with a public message that says what to fix.
type peerRefusal struct{ reason, msg string }

func refusePeer(reason, msg string) *peerRefusal { return &peerRefusal{reason: reason, msg: msg} }

func (e *peerRefusal) Error() string { return "auth: " + e.msg }

// APIError is the refusal as it is answered.
func (e *peerRefusal) APIError() *api.Error {
	return &api.Error{Code: api.CodeInvalidToken, Message: e.msg}
}

type connKey struct{}

// connPeer caches the peer of one connection: TLS 1.3 has no renegotiation,
// so the leaf of a connection never changes and its ID and fingerprint are
// computed once. The expiry is still checked on every request, and the chain
// is verified again whenever the trust bundle changes.
type connPeer struct {
	// state is the connection's TLS state, for servers that terminate TLS
	// themselves (server.Listener) and so leave http.Request.TLS nil.
	state func() tls.ConnectionState

	once  sync.Once
	peer  session.Peer
	chain []*x509.Certificate
	err   error

	// raw is the connection under TLS, by which ServerTLSConfig's handshake
	// remembered the bundle it verified the chain against.
	raw net.Conn

	mu       sync.Mutex
	verified *x509bundle.Bundle // the bundle the chain was last verified against
	taken    bool               // the handshake's bundle was looked up

	// memo remembers the last token accepted over the connection, and its
	// hash (see session.TokenMemo).
	memo session.TokenMemo
}

// ConnContext is for http.Server.ConnContext: it lets PeerFromRequest compute
// a connection's peer once instead of at every request, and lets the
// Middleware verify a connection's chain again only when the bundle changes.
// It also finds the TLS state of connections that are TLS without being a
// *tls.Conn (they have a ConnectionState method), and adds the connection's
// remote address to the attributes of the security events logged in its
// requests (session.WithLogAttrs) once, rather than at each request. And it
// keeps the connection's session.TokenMemo: RequireSession compares the
// token of each request with the last one accepted over the connection
// instead of hashing it again (the memo holds that token until the
// connection closes).
// Optional for a server that serves *tls.Conn connections; required for the
// others.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	cp := &connPeer{}
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn, and what embeds one
		cp.raw = nc.NetConn()
	}
	if s, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		if _, isTLS := c.(*tls.Conn); !isTLS {
			cp.state = s.ConnectionState
		}
	}
	if a := c.RemoteAddr(); a != nil {
		ctx = session.WithLogAttrs(ctx, slog.String("remote_addr", a.String()))
	}
	return context.WithValue(ctx, connKey{}, cp)
}

// PeerFromRequest returns the peer of r: the SPIFFE ID and fingerprint of its
// client leaf. It refuses a request without a client certificate, a leaf
// that cannot be an SVID client certificate (no single SPIFFE ID, a CA, no
// digitalSignature key usage, or an extended key usage without clientAuth),
// and one whose leaf has expired since its connection was opened
// (connections outlive certificates): the answer is 401 invalid_token, and
// the connection should be closed so the client reconnects with its current
// SVID. It does not verify the chain: the TLS layer or Middleware.Bundles
// does.
func PeerFromRequest(r *http.Request, now time.Time) (session.Peer, error) {
	p, _, _, err := peerFromRequest(r, now)
	if err != nil {
		return session.Peer{}, err
	}
	return p, nil
}

func peerFromRequest(r *http.Request, now time.Time) (session.Peer, []*x509.Certificate, *connPeer, error) {
	cp, _ := r.Context().Value(connKey{}).(*connPeer)
	chainOf := func() []*x509.Certificate {
		if r.TLS != nil {
			return r.TLS.PeerCertificates
		}
		if cp != nil && cp.state != nil {
			return cp.state().PeerCertificates
		}
		return nil
	}
	var certs []*x509.Certificate
	var p session.Peer
	var err error
	if cp != nil { // the connection's leaf never changes: read it once
		cp.once.Do(func() {
			if cp.chain = chainOf(); len(cp.chain) > 0 {
				cp.peer, cp.err = peerOf(cp.chain[0])
			}
		})
		certs, p, err = cp.chain, cp.peer, cp.err
	} else if certs = chainOf(); len(certs) > 0 {
		p, err = peerOf(certs[0])
	}
	if len(certs) == 0 {
		return session.Peer{}, nil, cp, refusePeer(reasonNoCertificate, "a client X.509 SVID is required")
	}
	if err != nil {
		return session.Peer{}, nil, cp, err
	}
	if !now.Before(p.NotAfter) {
		// p is returned with the refusal so that it is logged with the
		// identity it names (PeerFromRequest does not return it).
		return p, nil, cp, refusePeer(reasonLeafExpired, "the client certificate has expired: reconnect with a current SVID")
	}
	return p, certs, cp, nil
}

// verifyChain verifies chain against bundles, or reuses the verification of
// cp's connection if the bundle of the peer's trust domain is the one it was
// done against. A trust domain dropped from bundles, or a CA removed from
// its bundle, fails here on connections that were opened before.
func verifyChain(cp *connPeer, chain []*x509.Certificate, td spiffeid.TrustDomain, bundles x509bundle.Source) error {
	refused := func() error {
		return refusePeer(reasonUntrusted, "the client certificate is no longer trusted: reconnect with a current SVID")
	}
	b, err := bundles.GetX509BundleForTrustDomain(td)
	if err != nil || b == nil {
		return refused()
	}
	if cp != nil {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		if !cp.taken { // the first request: what did the handshake verify against?
			cp.taken = true
			cp.verified = handshakes.take(cp.raw)
		}
		if cp.verified == b {
			return nil
		}
	}
	if _, _, err := x509svid.Verify(chain, bundles); err != nil {
		return refused()
	}
	if cp != nil {
		cp.verified = b
	}
	return nil
}

func peerOf(leaf *x509.Certificate) (session.Peer, error) {
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		// The handshake already refused such leaves; this is defence in depth.
		return session.Peer{}, refusePeer(reasonNotSVID, "the client certificate carries no single SPIFFE ID")
	}
	if err := checkClientLeaf(leaf); err != nil {
		return session.Peer{}, refusePeer(reasonNotSVID, "the client certificate is not an X.509-SVID client certificate: "+err.Error())
	}
	return session.Peer{ID: id, Fingerprint: svid.Fingerprint(leaf), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil
}

// checkClientLeaf enforces what the X.509-SVID specification asks of a leaf
// used as a TLS client certificate: not a CA, the digitalSignature key usage
// (a MUST of the specification), and, if it lists extended key usages at
// all, clientAuth among them (a server-only or code-signing certificate is
// not a client SVID).
func checkClientLeaf(leaf *x509.Certificate) error {
	if leaf.IsCA {
		return errors.New("it is a CA certificate")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("it lacks the digitalSignature key usage")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return errors.New("it may sign certificates or CRLs")
	}
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return errors.New("its extended key usage does not allow TLS client authentication")
}
