package auth_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
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

// TestCallerHandlerLends: RequireSessionFunc and RequirePeerFunc hand the
// handler its Caller, not through the context, and on a connection whose
// peer ConnContext caches they lend it: once the handler has returned, the
// Caller it was given is cleared (a handler that kept it would find nothing
// of the request, and no token), and the use of a session answered 2xx is
// committed. Without ConnContext, the Caller is in a copy of the request's
// context, as RequireSession puts it, and outlives the call.
func TestCallerHandlerLends(t *testing.T) {
	type seen struct {
		c       *auth.Caller
		inCtx   bool
		id, tok string
		peer    string
	}
	var got []seen
	keep := func(status int) auth.CallerHandler {
		return func(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
			inCtx, _ := auth.CallerFrom(r.Context())
			got = append(got, seen{c: c, inCtx: inCtx == c, id: c.Session.ID, tok: c.Token, peer: c.Peer.ID.String()})
			w.WriteHeader(status)
		}
	}
	e := newEnv(t, envOpts{routes: func(e *env, mux *http.ServeMux) {
		mux.Handle("/func/session", e.mw.RequireSessionFunc(keep(http.StatusOK)))
		mux.Handle("/func/failing", e.mw.RequireSessionFunc(keep(http.StatusInternalServerError)))
		mux.Handle("/func/peer", e.mw.RequirePeerFunc(keep(http.StatusOK)))
	}})
	alice := e.ca.Issue(t, "spiffe://example.org/admin/alice")
	tok, info, err := e.mgr.Login(context.Background(), session.Peer{ID: alice.ID, Fingerprint: svid.Fingerprint(alice.Certificates[0]), NotAfter: alice.Certificates[0].NotAfter})
	require.NoError(t, err)
	c := e.client(testpki.TLSCertificate(alice))
	call := func(path, token string) int {
		req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	lastUsed := func() time.Time {
		infos, err := e.mgr.List(nil)
		require.NoError(t, err)
		require.Len(t, infos, 1)
		return infos[0].LastUsedAt
	}

	// Over TLS with ConnContext: lent, then cleared.
	e.clock.Add(time.Minute)
	require.Equal(t, http.StatusInternalServerError, call("/func/failing", tok))
	require.Equal(t, info.LastUsedAt, lastUsed(), "a failed answer is no use of the session")
	require.Equal(t, http.StatusOK, call("/func/session", tok))
	require.True(t, e.clock.Now().Equal(lastUsed()), "a 2xx answer is a use of the session")
	require.Equal(t, http.StatusOK, call("/func/peer", ""))
	require.Equal(t, http.StatusUnauthorized, call("/func/session", ""), "no token, no call")
	require.Len(t, got, 3)
	for _, g := range got {
		require.False(t, g.inCtx, "the Caller is not in the context")
		require.Equal(t, alice.ID.String(), g.peer)
		require.Equal(t, auth.Caller{}, *g.c, "the lent Caller is cleared once the handler returned")
	}
	require.Equal(t, []string{info.ID, info.ID, ""}, []string{got[0].id, got[1].id, got[2].id})
	require.Equal(t, []string{tok, tok, ""}, []string{got[0].tok, got[1].tok, got[2].tok})

	// Called without ConnContext: the Caller is in the context, and kept.
	got = nil
	req := httptest.NewRequest(http.MethodGet, "/func/session", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := e.serveHTTP(req, alice.Certificates, false)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Len(t, got, 1)
	require.True(t, got[0].inCtx, "without ConnContext the Caller is in the request's context")
	require.Equal(t, info.ID, got[0].c.Session.ID, "and outlives the call")
	require.Equal(t, tok, got[0].c.Token)
}
