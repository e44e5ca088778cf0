package client_test

import (
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// sourceClient is a client of the roles server presenting what src holds.
func (s *rolesServer) sourceClient(t *testing.T, src *testpki.Source, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.url, spiffeid.RequireFromString(serverID), src, s.ca.Bundle(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRefusedRebindLogsInAnew: tetherd (its real handler) refuses to rebind
// a session to a leaf that is not strictly newer than the bound one (400
// bad_request): two leaves of the same second, or an older SVID back in
// use. The request logs in anew with the leaf presented now and goes on;
// the old session stays bound to the other leaf. Without auto-login the
// refusal is returned; a pending session's rebind refusal (approval_pending)
// is never logged in around.
func TestRefusedRebindLogsInAnew(t *testing.T) {
	ctx := t.Context()
	for name, leaves := range map[string]func(s *rolesServer) (bound, next *x509svid.SVID){
		"older-svid": func(s *rolesServer) (bound, next *x509svid.SVID) {
			older := s.ca.Issue(t, aliceID)
			return s.ca.Issue(t, aliceID), older
		},
		"same-second": func(s *rolesServer) (bound, next *x509svid.SVID) {
			bound = s.ca.Issue(t, aliceID)
			leaf := bound.Certificates[0]
			return bound, s.ca.Issue(t, aliceID, testpki.WithValidity(leaf.NotBefore, leaf.NotAfter))
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newRolesServer(t)
			bound, next := leaves(s)
			src := testpki.NewSource(bound)
			store := new(tokenStore)
			alice := s.sourceClient(t, src, client.WithTokenStore(store))
			first, err := alice.Login(ctx)
			require.NoError(t, err)

			src.Set(next)
			// Without auto-login: the refusal, and nothing more.
			off := s.sourceClient(t, src, client.WithTokenStore(store), client.WithAutoLogin(false))
			_, err = off.Whoami(ctx)
			requireAPIError(t, err, api.CodeBadRequest, http.StatusBadRequest)
			require.Equal(t, 1, s.count("POST "+api.PathRebind))
			require.Equal(t, 1, s.count("POST "+api.PathSessions), "no login")

			me, err := alice.Whoami(ctx)
			require.NoError(t, err)
			require.NotEqual(t, first.SessionID, me.SessionID, "a new session")
			require.Equal(t, fingerprint(next), me.CNF.X5TS256, "bound to the leaf presented now")
			require.Equal(t, 2, s.count("POST "+api.PathRebind), "one rebind tried")
			require.Equal(t, 2, s.count("POST "+api.PathSessions), "one login")
			require.Equal(t, 3, s.count("GET "+api.PathSessionsSelf), "off's, then alice's, sent again")

			list, err := alice.List(ctx, spiffeid.RequireFromString(aliceID))
			require.NoError(t, err)
			byID := map[string]api.Session{}
			for _, l := range list {
				byID[l.SessionID] = l
			}
			require.Len(t, byID, 2)
			require.Equal(t, fingerprint(bound), byID[first.SessionID].CNF.X5TS256, "the old session keeps its binding and idles out")
		})
	}

	t.Run("pending", func(t *testing.T) {
		s := newRolesServer(t)
		bound := s.ca.Issue(t, aliceID)
		leaf := bound.Certificates[0]
		src := testpki.NewSource(bound)
		alice := s.sourceClient(t, src)
		pending, err := alice.LoginRoles(ctx, "breakglass")
		require.NoError(t, err)
		require.Equal(t, api.StatePending, pending.State)

		src.Set(s.ca.Issue(t, aliceID, testpki.WithValidity(leaf.NotBefore, leaf.NotAfter)))
		_, err = alice.Whoami(ctx)
		var apiErr *client.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, api.CodeApprovalPending, apiErr.Code)
		require.Equal(t, 1, s.count("POST "+api.PathSessions), "no login around a pending session")
	})
}
