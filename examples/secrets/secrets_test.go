package secrets_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/examples/secrets"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

type reply struct {
	status int
	header http.Header
	body   string
}

func (r reply) code() api.Code {
	var er api.ErrorResponse
	_ = json.Unmarshal([]byte(r.body), &er)
	if er.Error == nil {
		return ""
	}
	return er.Error.Code
}

// TestSecretsTwoPersonRestore runs the example over real TLS with two admin
// identities: reading needs a session, writing the role "write", and
// "restore" a session that a second admin approved and a fresh login.
func TestSecretsTwoPersonRestore(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	serviceSVID := ca.Issue(t, "spiffe://example.org/nexus")
	bundles := x509bundle.NewSet(ca.Bundle())
	src := &svid.StaticSource{SVID: serviceSVID, Bundles: bundles}
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(t, err)
	clock := testutil.NewClock(time.Now())
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	sessions, err := session.NewManager(session.Config{
		Issuer: serviceSVID.ID, LoginRate: rate.Inf, Now: clock.Now, SweepInterval: time.Hour, Logger: log,
		Roles: []session.Role{
			{Name: "write", Holders: admins.Matcher()},
			{Name: "restore", Holders: admins.Matcher(), TTL: 15 * time.Minute, Approvals: 1, Approvers: admins.Matcher()},
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sessions.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tlsCfg := auth.ServerTLSConfig(src, src)
	srv := server.NewHTTPServer(secrets.New(sessions, bundles, admins, log), tlsCfg, log)
	go func() { _ = srv.Serve(server.NewListener(ln, tlsCfg, server.ConnLimits{}, log, nil)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	base := "https://" + ln.Addr().String()
	client := func(s *x509svid.SVID) *http.Client {
		cs := &svid.StaticSource{SVID: s, Bundles: bundles}
		cfg := tlsconfig.MTLSClientConfig(cs, cs, tlsconfig.AuthorizeID(serviceSVID.ID))
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	do := func(c *http.Client, method, path, token, body string) reply {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header, string(b)}
	}
	login := func(c *http.Client, roles ...string) (string, api.Session) {
		t.Helper()
		body := ""
		if len(roles) > 0 {
			b, _ := json.Marshal(api.LoginRequest{Roles: roles})
			body = string(b)
		}
		r := do(c, http.MethodPost, api.PathSessions, "", body)
		require.Equal(t, http.StatusCreated, r.status, r.body)
		var lr api.LoginResponse
		require.NoError(t, json.Unmarshal([]byte(r.body), &lr))
		return lr.Token, lr.Session
	}
	alice := client(ca.Issue(t, "spiffe://example.org/admin/alice"))
	bob := client(ca.Issue(t, "spiffe://example.org/admin/bob"))
	web := client(ca.Issue(t, "spiffe://example.org/web"))

	// A plain login gets the roles that need no approval: write, not restore.
	tok, s := login(alice)
	require.Equal(t, []string{"write"}, s.Roles)
	require.Equal(t, api.StateActive, s.State)
	require.Equal(t, http.StatusNoContent, do(alice, http.MethodPut, "/v1/secrets/db", tok, "s3cret").status)
	require.Equal(t, http.StatusOK, do(alice, http.MethodGet, "/v1/secrets/db", tok, "").status)
	r := do(alice, http.MethodPost, "/v1/restore", tok, "")
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, api.CodeRoleRequired, r.code())
	require.Regexp(t, `"msg":"session.rejected"[^\n]*"reason":"role_required"[^\n]*"session_id":"`+s.SessionID+`"`, logs.String(),
		"the refusal names the session it refused")

	// A role the identity may not hold.
	r = do(web, http.MethodPost, api.PathSessions, "", `{"roles":["restore"]}`)
	require.Equal(t, http.StatusForbidden, r.status, r.body)

	// alice asks for restore: pending, its token refused until approved.
	rtok, rs := login(alice, "restore")
	require.Equal(t, api.StatePending, rs.State)
	require.Equal(t, []string{"restore"}, rs.Roles)
	require.True(t, rs.ExpiresAt.Sub(rs.CreatedAt) <= 15*time.Minute, "the role's TTL caps the session")
	r = do(alice, http.MethodPost, "/v1/restore", rtok, "")
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, api.CodeApprovalPending, r.code())

	// Nobody approves their own session; bob approves (once counts once).
	r = do(alice, http.MethodPost, api.PathSessions+"/"+rs.SessionID+api.PathApprove, tok, "")
	require.Equal(t, http.StatusForbidden, r.status, r.body)
	btok, _ := login(bob)
	r = do(bob, http.MethodPost, api.PathSessions+"/"+rs.SessionID+api.PathApprove, btok, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	var sr api.SessionResponse
	require.NoError(t, json.Unmarshal([]byte(r.body), &sr))
	require.Equal(t, api.StateActive, sr.Session.State)
	require.Len(t, sr.Session.Approvals, 1)
	require.Equal(t, "spiffe://example.org/admin/bob", sr.Session.Approvals[0].SPIFFEID)

	// Approved and fresh: restore works. Six minutes later: step up.
	require.Equal(t, http.StatusNoContent, do(alice, http.MethodPost, "/v1/restore", rtok, "").status)
	clock.Add(6 * time.Minute)
	r = do(alice, http.MethodPost, "/v1/restore", rtok, "")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, api.CodeInsufficientAuth, r.code())
	require.Equal(t, `Bearer realm="tether", error="insufficient_user_authentication", max_age=300`, r.header.Get("WWW-Authenticate"))

	// A denied request ends its session.
	dtok, ds := login(alice, "restore")
	r = do(bob, http.MethodPost, api.PathSessions+"/"+ds.SessionID+api.PathDeny, btok, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	r = do(alice, http.MethodGet, "/v1/secrets/db", dtok, "")
	require.Equal(t, api.CodeSessionEnded, r.code())

	// A session waiting for approval may end itself, and nothing else.
	ptok, _ := login(alice, "restore")
	require.Equal(t, api.CodeApprovalPending, do(alice, http.MethodGet, api.PathSessionsSelf, ptok, "").code())
	require.Equal(t, http.StatusNoContent, do(alice, http.MethodDelete, api.PathSessionsSelf, ptok, "").status)
	require.Equal(t, api.CodeSessionEnded, do(alice, http.MethodGet, api.PathSessionsSelf, ptok, "").code())

	// The audit names who did what in which session; the events name both identities.
	out := logs.String()
	require.Contains(t, out, `"msg":"secrets.audit","op":"restore","spiffe_id":"spiffe://example.org/admin/alice","session_id":"`+rs.SessionID+`"`)
	require.Contains(t, out, `"msg":"role.used","role":"restore"`)
	require.Contains(t, out, `"msg":"approval.denied"`)
	require.Contains(t, out, `"reason":"self_approval","session_id":"`+rs.SessionID+`","requester":"spiffe://example.org/admin/alice"`, "a refused approval names both identities")
}
