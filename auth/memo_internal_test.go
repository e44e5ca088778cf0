package auth

// An internal test: what it checks (the connection's TokenMemo) is not
// visible from outside the package.

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// tlsConn is a connection that is TLS without being a *tls.Conn (as
// server.Listener's are): ConnContext takes its state from it.
type tlsConn struct {
	net.Conn
	state tls.ConnectionState
}

func (c tlsConn) ConnectionState() tls.ConnectionState { return c.state }
func (c tlsConn) RemoteAddr() net.Addr                 { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }

// TestConnectionRemembersToken: RequireSession and RequireSessionFunc check
// a token through the TokenMemo of the connection ConnContext made, which
// then remembers the token it accepted (the next request over the
// connection is not hashed again), and only that one.
func TestConnectionRemembersToken(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	mgr, err := session.NewManager(session.Config{
		Issuer: spiffeid.RequireFromString("spiffe://example.org/tetherd"), LoginRate: rate.Inf, SweepInterval: time.Hour,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mgr.Close() })
	mw := &Middleware{Sessions: mgr, Bundles: x509bundle.NewSet(ca.Bundle())}
	ok := func(w http.ResponseWriter, _ *http.Request, _ *Caller) { w.WriteHeader(http.StatusNoContent) }
	handlers := map[string]http.Handler{
		"RequireSessionFunc": mw.RequireSessionFunc(ok),
		"RequireSession":     mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })),
	}
	alice := ca.Issue(t, "spiffe://example.org/admin/alice")
	leaf := alice.Certificates[0]
	tok, _, err := mgr.Login(context.Background(), session.Peer{ID: alice.ID, Fingerprint: svid.Fingerprint(leaf), NotAfter: leaf.NotAfter})
	require.NoError(t, err)

	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			ctx := ConnContext(context.Background(), tlsConn{state: tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: alice.Certificates}})
			cp, _ := ctx.Value(connKey{}).(*connPeer)
			require.NotNil(t, cp)
			serve := func(token string) int {
				r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
				r.Header.Set("Authorization", "Bearer "+token)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				return rec.Code
			}
			require.False(t, cp.memo.Remembers(tok))
			require.Equal(t, http.StatusUnauthorized, serve(tok+"x"))
			require.False(t, cp.memo.Remembers(tok+"x"), "a refused token is not remembered")
			require.Equal(t, http.StatusNoContent, serve(tok))
			require.True(t, cp.memo.Remembers(tok), "the accepted token is remembered by its connection")
			require.Equal(t, http.StatusNoContent, serve(tok))
		})
	}
}
