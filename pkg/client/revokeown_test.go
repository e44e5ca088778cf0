package client_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// TestRevokeOwn: the SVID alone ends the caller's own sessions; the stored
// token is never sent, and forgotten once its session has ended.
func TestRevokeOwn(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	store := f.store
	for range 3 {
		f.login(t)
	}
	before := len(f.server.requests())

	n, err := f.client.RevokeOwn(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	reqs := f.server.requests()[before:]
	require.Len(t, reqs, 1, "one request: no login, no retry")
	require.Equal(t, http.MethodDelete, reqs[0].method)
	require.Equal(t, api.PathSessions, reqs[0].path)
	require.Equal(t, aliceID, reqs[0].spiffeID, "its own SPIFFE ID")
	require.Equal(t, aliceID, reqs[0].peer.String())
	require.Empty(t, reqs[0].authorization, "the SVID alone: no token")
	token, err := store.LoadToken()
	require.NoError(t, err)
	require.Empty(t, token, "the stored token's session ended with the others")
	all, err := f.newClient(t, f.source).List(ctx, f.source.SVID().ID)
	require.NoError(t, err)
	require.Len(t, all, 1, "only the session the listing client logged in with is live")
}

// TestRevokeOwnNeverLogsIn: a tetherd that wants a token for it (one older
// than SVID-alone revocation) refuses with missing_token; RevokeOwn returns
// that, neither logging in nor retrying with the stored token, which it
// keeps.
func TestRevokeOwnNeverLogsIn(t *testing.T) {
	ctx := t.Context()
	for _, withSession := range []bool{false, true} {
		f := setup(t, aliceID)
		store := f.store
		f.server.mu.Lock()
		f.server.tokenToRevoke = true
		f.server.mu.Unlock()
		if withSession {
			f.login(t)
		}
		before, _ := store.LoadToken()

		n, err := f.client.RevokeOwn(ctx)
		requireAPIError(t, err, api.CodeMissingToken, http.StatusUnauthorized)
		require.Zero(t, n)
		require.Equal(t, 1, f.server.count("DELETE "+api.PathSessions), "asked once")
		logins, rebinds := f.server.counts()
		require.Equal(t, map[bool]int{false: 0, true: 1}[withSession], logins, "RevokeOwn never logs in")
		require.Zero(t, rebinds)
		after, _ := store.LoadToken()
		require.Equal(t, before, after, "a token whose session was not ended is kept")
	}
}
