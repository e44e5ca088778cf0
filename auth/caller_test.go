package auth_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// TestCallerOutlivesRequest: the request a handler gets is a copy of the
// server's own carrying the Caller (as Request.WithContext makes one), and
// its context, kept after the handler returned, still answers CallerFrom
// with that request's caller and session once other requests were served:
// nothing of a request is reused for the next.
func TestCallerOutlivesRequest(t *testing.T) {
	e := newEnv(t, envOpts{})
	type seen struct {
		r   *http.Request
		ctx context.Context // kept after the handler returned: what is tested
	}
	var got []seen
	h := e.mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, seen{r: r, ctx: r.Context()})
	}))
	var tokens, ids []string
	var reqs []*http.Request
	for _, id := range []string{"spiffe://example.org/admin/alice", "spiffe://example.org/admin/bob"} {
		s := e.ca.Issue(t, id)
		tok, info, err := e.mgr.Login(context.Background(), session.Peer{ID: s.ID, Fingerprint: svid.Fingerprint(s.Certificates[0]), NotAfter: s.Certificates[0].NotAfter})
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodGet, pathSession, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: s.Certificates}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		tokens, ids, reqs = append(tokens, tok), append(ids, info.ID), append(reqs, req)
	}
	require.Len(t, got, 2)
	for i, g := range got {
		require.NotSame(t, reqs[i], g.r, "the handler gets a copy of the request")
		require.Equal(t, reqs[i].Header, g.r.Header, "a shallow copy")
		require.Same(t, g.ctx, g.r.Context())
		_, ok := auth.CallerFrom(reqs[i].Context())
		require.False(t, ok, "the server's own request is left as it was")
		c, ok := auth.CallerFrom(g.ctx)
		require.True(t, ok)
		require.Equal(t, ids[i], c.Session.ID)
		require.Equal(t, tokens[i], c.Token)
		again, _ := auth.CallerFrom(g.ctx)
		require.Same(t, c, again)
	}
	first, _ := auth.CallerFrom(got[0].ctx)
	second, _ := auth.CallerFrom(got[1].ctx)
	require.NotSame(t, first, second)
	require.NotEqual(t, first.Peer.ID, second.Peer.ID)
}
