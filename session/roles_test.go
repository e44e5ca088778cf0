package session_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// under matches the IDs below prefix (a test stand-in for auth.Policy).
func under(prefix string) spiffeid.Matcher {
	return func(id spiffeid.ID) error {
		if len(id.String()) > len(prefix) && id.String()[:len(prefix)] == prefix {
			return nil
		}
		return fmt.Errorf("%s is not under %s", id, prefix)
	}
}

func rolesManager(t *testing.T) (*session.Manager, func(time.Duration)) {
	t.Helper()
	m, clk := session.NewTestManager(t, func(c *session.Config) {
		c.Roles = []session.Role{
			{Name: "read", Holders: under("spiffe://example.org/admin/")},
			{Name: "write", Holders: under("spiffe://example.org/admin/a")},
			{Name: "audit", Holders: under("spiffe://example.org/admin/"), TTL: 20 * time.Minute},
			{Name: "restore", Holders: under("spiffe://example.org/admin/"), Approvals: 2, Approvers: under("spiffe://example.org/admin/")},
		}
	})
	return m, func(d time.Duration) { clk.Add(d) }
}

func TestRoleGrants(t *testing.T) {
	m, _ := rolesManager(t)
	ctx := context.Background()
	_, info, err := m.Login(ctx, alice)
	require.NoError(t, err)
	require.Equal(t, []string{"read", "write"}, info.Roles, "by default: the identity's roles that are not elevated")
	require.Equal(t, api.StateActive, info.State)
	require.Equal(t, info.CreatedAt, info.AuthenticatedAt)

	_, info, err = m.Login(ctx, bob)
	require.NoError(t, err)
	require.Equal(t, []string{"read"}, info.Roles, "bob does not hold write")

	_, _, err = m.Login(ctx, bob, "write")
	requireRefusal(t, err, api.CodeForbidden, session.ReasonRoleNotHeld)
	_, _, err = m.Login(ctx, bob, "no-such-role")
	requireRefusal(t, err, api.CodeForbidden, session.ReasonRoleNotHeld)

	_, info, err = m.Login(ctx, alice, "audit", "audit")
	require.NoError(t, err)
	require.Equal(t, []string{"audit"}, info.Roles)
	require.Equal(t, 20*time.Minute, info.ExpiresAt.Sub(info.CreatedAt), "the role's TTL caps the session")
}

func TestTwoPersonApproval(t *testing.T) {
	m, advance := rolesManager(t)
	ctx := context.Background()
	carol := session.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/carol"), Fingerprint: "fp-carol"}
	web := session.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/web"), Fingerprint: "fp-web"}
	tok, info, err := m.Login(ctx, alice, "restore")
	require.NoError(t, err)
	require.Equal(t, api.StatePending, info.State)

	_, err = m.Validate(ctx, tok, alice)
	requireRefusal(t, err, api.CodeApprovalPending, session.ReasonPending)
	_, active := m.Introspect(ctx, tok, alice.Fingerprint)
	require.False(t, active, "a pending session is not active for introspection")
	list := must(m.List(nil))
	require.Len(t, list, 1)
	require.Equal(t, api.StatePending, list[0].State, "pending sessions are listed with their state")

	_, err = m.Decide(ctx, info.ID, alice, true)
	requireRefusal(t, err, api.CodeForbidden, session.ReasonSelfApproval)
	_, err = m.Decide(ctx, info.ID, web, true)
	requireRefusal(t, err, api.CodeForbidden, session.ReasonNotApprover)

	advance(time.Minute)
	got, err := m.Decide(ctx, info.ID, bob, true)
	require.NoError(t, err)
	require.Equal(t, api.StatePending, got.State)
	got, err = m.Decide(ctx, info.ID, bob, true)
	require.NoError(t, err)
	require.Len(t, got.Approvals, 1, "an approver counts once")
	require.Equal(t, api.StatePending, got.State)

	got, err = m.Decide(ctx, info.ID, carol, true)
	require.NoError(t, err)
	require.Equal(t, api.StateActive, got.State)
	require.Len(t, got.Approvals, 2)
	_, err = m.Validate(ctx, tok, alice)
	require.NoError(t, err, "approved: the token works")

	_, err = m.Decide(ctx, info.ID, carol, true)
	requireRefusal(t, err, api.CodeBadRequest, session.ReasonNotPending)
	_, err = m.Decide(ctx, "no-such-session", carol, true)
	requireRefusal(t, err, api.CodeNotFound, session.ReasonNoSuchSession)
}

// TestPendingCannotRebind: a pending token is refused for a rebind too
// (which would move its idle clock), and the session keeps its binding;
// once approved, it rebinds.
func TestPendingCannotRebind(t *testing.T) {
	m, advance := rolesManager(t)
	ctx := context.Background()
	carol := session.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/carol"), Fingerprint: "fp-carol"}
	tok, info, err := m.Login(ctx, alice, "restore")
	require.NoError(t, err)
	require.Equal(t, api.StatePending, info.State)

	advance(time.Minute)
	_, _, err = m.Rebind(ctx, tok, alice2)
	requireRefusal(t, err, api.CodeApprovalPending, session.ReasonPending)
	got, ok := m.Get(info.ID)
	require.True(t, ok)
	require.Equal(t, alice.Fingerprint, got.Fingerprint, "still bound to the leaf it logged in with")
	require.Equal(t, info.LastUsedAt, got.LastUsedAt, "the refused rebind is not a use")

	_, err = m.Decide(ctx, info.ID, bob, true)
	require.NoError(t, err)
	_, err = m.Decide(ctx, info.ID, carol, true)
	require.NoError(t, err)
	newTok, rebound, err := m.Rebind(ctx, tok, alice2)
	require.NoError(t, err, "approved: the session rebinds")
	require.Equal(t, alice2.Fingerprint, rebound.Fingerprint)
	_, err = m.Validate(ctx, newTok, alice2)
	require.NoError(t, err)
}

func TestDenialEndsAndPendingIdlesOut(t *testing.T) {
	m, advance := rolesManager(t)
	ctx := context.Background()
	tok, info, err := m.Login(ctx, alice, "restore")
	require.NoError(t, err)
	_, err = m.Decide(ctx, info.ID, bob, false)
	require.NoError(t, err)
	_, err = m.Validate(ctx, tok, alice)
	requireRefusal(t, err, api.CodeSessionEnded, session.ReasonDenied)

	_, info, err = m.Login(ctx, alice, "restore")
	require.NoError(t, err)
	advance(10 * time.Minute) // the idle timeout: nobody approved in time
	m.Sweep(ctx)
	_, ok := m.Get(info.ID)
	require.False(t, ok, "a pending session nobody approves ends at the idle timeout")
}

func TestRoleConfigErrors(t *testing.T) {
	for name, roles := range map[string][]session.Role{
		"no-name":      {{Holders: under("x")}},
		"twice":        {{Name: "a", Holders: under("x")}, {Name: "a", Holders: under("x")}},
		"no-holders":   {{Name: "a"}},
		"no-approvers": {{Name: "a", Holders: under("x"), Approvals: 1}},
		"negative":     {{Name: "a", Holders: under("x"), TTL: -time.Second}},
	} {
		_, err := session.NewManager(session.Config{Issuer: issuer, Roles: roles})
		require.Error(t, err, name)
	}
}
