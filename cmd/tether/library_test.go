package main

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/svid"
)

// TestLibraryAgainstTetherd runs pkg/client in one process against the real
// tetherd: rotation within a long-lived client (kept-alive connections
// must not keep presenting the old leaf), and introspection.
func TestLibraryAgainstTetherd(t *testing.T) {
	t.Parallel()
	s := newStack(t, "--introspector", carolID)
	ctx := t.Context()
	src := testpki.NewSource(s.ca.Issue(t, aliceID))
	c, err := client.New(s.URL(), spiffeid.RequireFromString(serverID), src, s.ca.Bundle())
	require.NoError(t, err)
	defer func() { _ = c.Close() }()

	first, err := c.Whoami(ctx) // logs in
	require.NoError(t, err)
	_, err = c.List(ctx, spiffeid.ID{}) // keeps the connection alive
	require.NoError(t, err)

	src.Set(s.ca.Issue(t, aliceID))
	after, err := c.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, first.SessionID, after.SessionID)
	require.Equal(t, svid.Fingerprint(src.SVID().Certificates[0]), after.CNF.X5TS256)

	// Do, with a relative URL.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.PathSessionsSelf, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	var self api.SessionResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&self))
	_ = resp.Body.Close()
	require.Equal(t, first.SessionID, self.Session.SessionID)

	// carol, an --introspector, checks a token the CLI cached for alice.
	alice := s.user(t, aliceID)
	aliceSession := alice.session("login")
	raw, err := os.ReadFile(alice.cacheFile())
	require.NoError(t, err)
	var cached cacheFile
	require.NoError(t, json.Unmarshal(raw, &cached))
	carol, err := client.New(s.URL(), spiffeid.RequireFromString(serverID), s.ca.Issue(t, carolID), s.ca.Bundle())
	require.NoError(t, err)
	defer func() { _ = carol.Close() }()
	in, err := carol.Introspect(ctx, cached.Token, svid.Fingerprint(alice.svid.Certificates[0]))
	require.NoError(t, err)
	require.True(t, in.Active)
	require.Equal(t, aliceSession.SessionID, in.Session.SessionID)
	in, err = carol.Introspect(ctx, cached.Token, svid.Fingerprint(src.SVID().Certificates[0]))
	require.NoError(t, err)
	require.False(t, in.Active, "bound to another leaf")

	// alice's own client is no introspector.
	_, err = c.Introspect(ctx, cached.Token, aliceSession.CNF.X5TS256)
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, api.CodeForbidden, apiErr.Code)
	require.Equal(t, http.StatusForbidden, apiErr.Status)

	require.NoError(t, c.Logout(ctx))
	_, err = c.Rebind(ctx)
	require.ErrorIs(t, err, client.ErrNoSession)
}
