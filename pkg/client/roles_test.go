package client_test

// Roles against tetherd's real API handler (package server, a session
// manager with roles) over mTLS: LoginRoles, Approve, Deny, and a pending
// session's approval_pending answered once, never retried or logged in
// around.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

const carolID = "spiffe://example.org/admin/carol"

// rolesServer is tetherd's API handler with two roles: "ops", which every
// admin holds, and "breakglass", which alice and bob may ask for and
// another admin must approve. It counts the requests by "METHOD path".
type rolesServer struct {
	ca  *testpki.CA
	url string

	mu   sync.Mutex
	hits map[string]int
}

func newRolesServer(t *testing.T) *rolesServer {
	t.Helper()
	ca := testpki.NewCA(t, "example.org")
	own := ca.Issue(t, serverID)
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(t, err)
	pair, err := auth.ParsePolicy([]string{aliceID, bobID})
	require.NoError(t, err)
	mgr, err := session.NewManager(session.Config{
		Issuer: own.ID, LoginRate: rate.Inf, SweepInterval: time.Hour,
		Roles: []session.Role{
			{Name: "ops", Holders: admins.Matcher()},
			{Name: "breakglass", Holders: pair.Matcher(), TTL: 15 * time.Minute, Approvals: 1, Approvers: admins.Matcher()},
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mgr.Close() })

	s := &rolesServer{ca: ca, hits: map[string]int{}}
	src := &svid.StaticSource{SVID: own, Bundles: x509bundle.NewSet(ca.Bundle())}
	log := slog.New(slog.DiscardHandler)
	api := server.NewHandler(server.Config{Sessions: mgr, Bundles: src, Admins: admins, Logger: log})
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.Method+" "+r.URL.Path]++
		s.mu.Unlock()
		api.ServeHTTP(w, r)
	})
	s.url = serveAPI(t, counted, src, log)
	return s
}

// serveAPI serves h as tetherd does (its HTTP server, TLS and listener) on
// a loopback port with src's SVID and bundles, until the test ends, and
// returns its URL.
func serveAPI(t *testing.T, h http.Handler, src *svid.StaticSource, log *slog.Logger) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tlsCfg := auth.ServerTLSConfig(src, src)
	srv := server.NewHTTPServer(h, tlsCfg, log)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(server.NewListener(ln, tlsCfg, server.ConnLimits{}, log, nil))
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	})
	return "https://" + ln.Addr().String()
}

// count is how many requests "METHOD path" the server has had.
func (s *rolesServer) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[key]
}

// client is a client of the server presenting a new SVID of id.
func (s *rolesServer) client(t *testing.T, id string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.url, spiffeid.RequireFromString(serverID), testpki.NewSource(s.ca.Issue(t, id)), s.ca.Bundle(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestLoginRolesApprove: alice asks for breakglass and gets a pending
// session; its token is refused with approval_pending, once, with no login
// or retry; she may not approve it herself; bob approves it and it works.
func TestLoginRolesApprove(t *testing.T) {
	ctx := t.Context()
	s := newRolesServer(t)
	alice, bob := s.client(t, aliceID), s.client(t, bobID)

	plain, err := bob.Login(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ops"}, plain.Roles, "Login: the roles that need no asking")
	require.Equal(t, api.StateActive, plain.State)

	pending, err := alice.LoginRoles(ctx, "breakglass")
	require.NoError(t, err)
	require.Equal(t, []string{"breakglass"}, pending.Roles)
	require.Equal(t, api.StatePending, pending.State)
	require.Empty(t, pending.Approvals)
	require.Equal(t, 2, s.count("POST "+api.PathSessions))

	_, err = alice.Whoami(ctx)
	requireAPIError(t, err, api.CodeApprovalPending, http.StatusForbidden)
	require.True(t, errors.Is(err, &api.Error{Code: api.CodeApprovalPending}))
	require.Equal(t, 1, s.count("GET "+api.PathSessionsSelf), "asked once: no retry")
	require.Equal(t, 2, s.count("POST "+api.PathSessions), "no login around a pending session")

	// Do hands the answer back as it came.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.PathSessions, nil)
	require.NoError(t, err)
	resp, err := alice.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, string(body), string(api.CodeApprovalPending))
	require.Equal(t, 2, s.count("POST "+api.PathSessions))

	// alice's other session may not approve her own request.
	aliceOther := s.client(t, aliceID)
	_, err = aliceOther.Approve(ctx, pending.SessionID)
	requireAPIError(t, err, api.CodeForbidden, http.StatusForbidden)
	require.Contains(t, err.Error(), "approve "+pending.SessionID)

	approved, err := bob.Approve(ctx, pending.SessionID)
	require.NoError(t, err)
	require.Equal(t, pending.SessionID, approved.SessionID)
	require.Equal(t, api.StateActive, approved.State)
	require.Len(t, approved.Approvals, 1)
	require.Equal(t, bobID, approved.Approvals[0].SPIFFEID)

	me, err := alice.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, pending.SessionID, me.SessionID, "the same session, now active")
	require.Equal(t, api.StateActive, me.State)
	require.Equal(t, []string{"breakglass"}, me.Roles)

	_, err = bob.Approve(ctx, pending.SessionID)
	requireAPIError(t, err, api.CodeBadRequest, http.StatusBadRequest) // waits for nothing now
}

// TestDeny: bob's denial ends alice's pending session; without auto-login
// her client gets session_ended, with it a new session of the roles that
// need no asking, never the denied role again.
func TestDeny(t *testing.T) {
	ctx := t.Context()
	s := newRolesServer(t)
	bob := s.client(t, bobID)
	_, err := bob.Login(ctx)
	require.NoError(t, err)

	for _, auto := range []bool{false, true} {
		alice := s.client(t, aliceID, client.WithAutoLogin(auto))
		pending, err := alice.LoginRoles(ctx, "breakglass")
		require.NoError(t, err)
		denied, err := bob.Deny(ctx, pending.SessionID)
		require.NoError(t, err)
		require.Equal(t, pending.SessionID, denied.SessionID)

		me, err := alice.Whoami(ctx)
		if !auto {
			requireAPIError(t, err, api.CodeSessionEnded, http.StatusUnauthorized)
			continue
		}
		require.NoError(t, err)
		require.NotEqual(t, pending.SessionID, me.SessionID, "a new session")
		require.Equal(t, []string{"ops"}, me.Roles, "logging in again never asks for the denied role")
		require.Equal(t, api.StateActive, me.State)
	}
}

// TestRolesRefusals: a role the identity may not hold, a session that is
// not there, a session ID that would leave its path segment.
func TestRolesRefusals(t *testing.T) {
	ctx := t.Context()
	s := newRolesServer(t)
	carol := s.client(t, carolID)
	_, err := carol.LoginRoles(ctx, "breakglass")
	requireAPIError(t, err, api.CodeForbidden, http.StatusForbidden)
	_, err = carol.LoginRoles(ctx, "no-such-role")
	requireAPIError(t, err, api.CodeForbidden, http.StatusForbidden)

	s2, err := carol.LoginRoles(ctx) // no roles: Login
	require.NoError(t, err)
	require.Equal(t, []string{"ops"}, s2.Roles)

	_, err = carol.Approve(ctx, "nosuchsession")
	requireAPIError(t, err, api.CodeNotFound, http.StatusNotFound)
	_, err = carol.Deny(ctx, "nosuchsession")
	requireAPIError(t, err, api.CodeNotFound, http.StatusNotFound)
	for _, id := range []string{"../self", "x/deny", "self", ""} {
		_, err = carol.Approve(ctx, id)
		require.ErrorIs(t, err, client.ErrInvalidSessionID)
		_, err = carol.Deny(ctx, id)
		require.ErrorIs(t, err, client.ErrInvalidSessionID)
	}
	require.Zero(t, s.count("POST "+api.PathSessionsSelf+api.PathApprove)+s.count("POST "+api.PathSessionsSelf+api.PathDeny), "never sent")
	_, err = carol.Approve(ctx, "")
	require.ErrorContains(t, err, "no session ID")
	me, err := carol.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, s2.SessionID, me.SessionID, "carol's session is untouched")
}

// A break-glass role that needs a second person: the requester's session
// is pending until an approver's client approves it; the requester polls
// Whoami, which answers approval_pending meanwhile.
func ExampleClient_LoginRoles() {
	ctx := context.Background()
	var requester, approver *client.Client // made with client.New, each with its own SVID

	pending, err := requester.LoginRoles(ctx, "breakglass")
	if err != nil {
		log.Fatal(err) // forbidden: this identity may not hold the role
	}
	fmt.Println(pending.State, "- an approver runs: tether sessions approve", pending.SessionID)

	// Elsewhere, another admin allowed by the role's --role-approvers:
	if _, err := approver.Approve(ctx, pending.SessionID); err != nil {
		log.Fatal(err)
	}

	for {
		s, err := requester.Whoami(ctx)
		if errors.Is(err, &api.Error{Code: api.CodeApprovalPending}) {
			select {
			case <-ctx.Done():
				log.Fatal(ctx.Err())
			case <-time.After(2 * time.Second): // ask again, at a pace
			}
			continue
		}
		if err != nil {
			log.Fatal(err) // session_ended: denied, or it sat pending until it idled out
		}
		fmt.Println(s.State, s.Roles)
		return
	}
}
