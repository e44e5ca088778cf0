package auth

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// Peer is the caller of a request: its SPIFFE ID, its leaf's fingerprint and
// the leaf's expiry.
type Peer struct {
	session.Peer
	NotAfter time.Time
}

type connKey struct{}

// connPeer caches the peer of one connection: TLS 1.3 has no renegotiation,
// so the leaf of a connection never changes and its ID and fingerprint are
// computed once. The expiry is still checked on every request.
type connPeer struct {
	once sync.Once
	peer Peer
	err  error
}

// ConnContext is for http.Server.ConnContext: it lets PeerFromRequest compute
// a connection's peer once instead of at every request. Optional.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connPeer{})
}

// PeerFromRequest returns the verified peer of r. It refuses a request
// without a client certificate and one whose leaf has expired since its
// connection was opened (connections outlive certificates): the answer is
// 401 invalid_token, and the connection should be closed so the client
// reconnects with its current SVID.
func PeerFromRequest(r *http.Request, now time.Time) (Peer, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Peer{}, &api.Error{Code: api.CodeInvalidToken, Message: "a client X.509 SVID is required"}
	}
	var p Peer
	var err error
	if c, ok := r.Context().Value(connKey{}).(*connPeer); ok {
		c.once.Do(func() { c.peer, c.err = peerOf(r.TLS.PeerCertificates[0]) })
		p, err = c.peer, c.err
	} else {
		p, err = peerOf(r.TLS.PeerCertificates[0])
	}
	if err != nil {
		return Peer{}, err
	}
	if !now.Before(p.NotAfter) {
		return Peer{}, &api.Error{Code: api.CodeInvalidToken, Message: "the client certificate has expired: reconnect with a current SVID"}
	}
	return p, nil
}

func peerOf(leaf *x509.Certificate) (Peer, error) {
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		// The handshake already refused such leaves; this is defence in depth.
		return Peer{}, &api.Error{Code: api.CodeInvalidToken, Message: "the client certificate carries no single SPIFFE ID"}
	}
	return Peer{Peer: session.Peer{ID: id, Fingerprint: svid.Fingerprint(leaf)}, NotAfter: leaf.NotAfter}, nil
}

// Identity is the caller's SPIFFE ID as the middleware verified it.
func Identity(ctx context.Context) (spiffeid.ID, bool) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	if !ok {
		return spiffeid.ID{}, false
	}
	return c.Peer.ID, true
}
