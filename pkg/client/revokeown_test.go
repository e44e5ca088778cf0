package client_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// svidAloneRequest is what the SVID-alone server saw of one request.
type svidAloneRequest struct {
	method, path, spiffeID string
	peer                   spiffeid.ID
	authorization          []string
}

// newSVIDAloneServer is tetherd's DELETE /v1/sessions?spiffe_id= as it
// answers a peer acting on its own SPIFFE ID without a token: revoked
// sessions for its own ID, missing_token for anything else. It records every
// request.
func newSVIDAloneServer(t *testing.T, ca *testpki.CA, revoked int) (url string, seen func() []svidAloneRequest) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []svidAloneRequest
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
		require.NoError(t, err)
		mu.Lock()
		reqs = append(reqs, svidAloneRequest{
			method: r.Method, path: r.URL.Path, spiffeID: r.URL.Query().Get(api.QuerySPIFFEID),
			peer: peer, authorization: r.Header.Values("Authorization"),
		})
		mu.Unlock()
		if r.Method != http.MethodDelete || r.URL.Path != api.PathSessions || len(r.Header.Values("Authorization")) > 0 || r.URL.Query().Get(api.QuerySPIFFEID) != peer.String() {
			writeErr(w, api.CodeMissingToken, "no bearer token")
			return
		}
		writeJSON(w, http.StatusOK, api.RevokeResponse{Revoked: revoked})
	}))
	srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{testpki.TLSCertificate(ca.Issue(t, serverID))},
		ClientAuth:   tls.RequireAnyClientCert,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, func() []svidAloneRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]svidAloneRequest(nil), reqs...)
	}
}

// TestRevokeOwn: the SVID alone ends the caller's own sessions; the stored
// token is never sent, and forgotten once its session has ended.
func TestRevokeOwn(t *testing.T) {
	ctx := t.Context()
	ca := testpki.NewCA(t, "example.org")
	url, seen := newSVIDAloneServer(t, ca, 3)
	store := new(client.MemoryStore)
	require.NoError(t, store.SaveToken("a-token-of-a-session-of-alice"))
	c, err := client.New(url, spiffeid.RequireFromString(serverID), ca.Issue(t, aliceID), ca.Bundle(), client.WithTokenStore(store))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	n, err := c.RevokeOwn(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	reqs := seen()
	require.Len(t, reqs, 1, "one request: no login, no retry")
	assert.Equal(t, http.MethodDelete, reqs[0].method)
	assert.Equal(t, api.PathSessions, reqs[0].path)
	assert.Equal(t, aliceID, reqs[0].spiffeID, "its own SPIFFE ID")
	assert.Equal(t, aliceID, reqs[0].peer.String())
	assert.Empty(t, reqs[0].authorization, "the SVID alone: no token")
	token, err := store.LoadToken()
	require.NoError(t, err)
	assert.Empty(t, token, "the stored token's session ended with the others")
}

// TestRevokeOwnNeverLogsIn: a tetherd that wants a token for it (one older
// than SVID-alone revocation) refuses with missing_token; RevokeOwn returns
// that, neither logging in nor retrying with the stored token, which it
// keeps.
func TestRevokeOwnNeverLogsIn(t *testing.T) {
	ctx := t.Context()
	for _, withSession := range []bool{false, true} {
		store := new(client.MemoryStore)
		f := setup(t, aliceID, client.WithTokenStore(store))
		if withSession {
			_, err := f.client.Login(ctx)
			require.NoError(t, err)
		}
		before, _ := store.LoadToken()

		n, err := f.client.RevokeOwn(ctx)
		requireAPIError(t, err, api.CodeMissingToken, http.StatusUnauthorized)
		assert.Zero(t, n)
		assert.Equal(t, 1, f.server.count("DELETE "+api.PathSessions), "asked once")
		logins, rebinds := f.server.counts()
		assert.Equal(t, map[bool]int{false: 0, true: 1}[withSession], logins, "RevokeOwn never logs in")
		assert.Zero(t, rebinds)
		after, _ := store.LoadToken()
		assert.Equal(t, before, after, "a token whose session was not ended is kept")
	}
}

func TestRevokeOwnCanceled(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	url, seen := newSVIDAloneServer(t, ca, 1)
	c, err := client.New(url, spiffeid.RequireFromString(serverID), ca.Issue(t, aliceID), ca.Bundle())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c.RevokeOwn(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, seen())
}
