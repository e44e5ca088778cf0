package client_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// TestSessionIDChecked: Revoke, Approve and Deny refuse an ID that no
// session can have, above all one that would name another route ("self",
// DELETE /v1/sessions/self being a logout; "self/rebind"), and send
// nothing; an ID of the safe set, tetherd's or another form, goes out as
// one escaped path segment.
func TestSessionIDChecked(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	me := f.login(t)
	before := len(f.server.requests())

	for _, id := range []string{
		"", "self", ".", "..", "self/rebind", "../self", "x/deny", "/", "a b", "a%2Fb", "%73elf",
		"a?b", "a#b", "a;b", "a.b", "é", "a\x00b", "a\nb", "-\r",
	} {
		require.ErrorIs(t, client.CheckSessionID(id), client.ErrInvalidSessionID, "%q", id)
		err := f.client.Revoke(ctx, id)
		require.ErrorIs(t, err, client.ErrInvalidSessionID, "revoke %q", id)
		require.ErrorContains(t, err, "client: revoke: ")
		_, err = f.client.Approve(ctx, id)
		require.ErrorIs(t, err, client.ErrInvalidSessionID, "approve %q", id)
		_, err = f.client.Deny(ctx, id)
		require.ErrorIs(t, err, client.ErrInvalidSessionID, "deny %q", id)
	}
	require.EqualError(t, f.client.Revoke(ctx, ""), "client: revoke: no session ID")
	require.EqualError(t, f.client.Revoke(ctx, "self"), `client: revoke: "self" is not a session ID: it is the path of the caller's own session`)
	// A token pasted for an ID is not written back in the error.
	tok := "eyJhbGciOiJFZERTQSIsImtpZCI6Im4ifQ.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.c2lnbmF0dXJlLW9mLWEtdG9rZW4" // a compact JWS
	err := f.client.Revoke(ctx, tok)
	require.ErrorIs(t, err, client.ErrInvalidSessionID)
	require.NotContains(t, err.Error(), tok)
	require.NotContains(t, err.Error(), tok[:20])
	require.Len(t, f.server.requests(), before, "nothing was sent")
	now, err := f.client.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, me.SessionID, now.SessionID, "the caller's own session is untouched")

	// tetherd's form (26 lowercase base32) and any other of the safe set.
	for _, id := range []string{"fsmtarswidwd5iarlgdern3n24", "Ab-_09z", "-", "_"} {
		require.NoError(t, client.CheckSessionID(id), id)
		err := f.client.Revoke(ctx, id)
		requireAPIError(t, err, api.CodeNotFound, http.StatusNotFound)
		reqs := f.server.requests()
		last := reqs[len(reqs)-1]
		require.Equal(t, http.MethodDelete, last.method)
		require.Equal(t, api.PathSessions+"/"+id, last.path)
	}
}
