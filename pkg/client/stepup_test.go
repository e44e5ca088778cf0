package client_test

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// TestStepUpLogsInAgain: a service that hosts sessions asks, for one call,
// for a login younger than a minute (auth.WithFreshLogin: 401
// insufficient_user_authentication, RFC 9470). The client logs in again and
// the call goes through with the new session; with auto-login off the
// refusal comes back as it is.
func TestStepUpLogsInAgain(t *testing.T) {
	ctx := t.Context()
	ca := testpki.NewCA(t, "example.org")
	own := ca.Issue(t, serverID)
	clk := testutil.NewClock(time.Now())
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(t, err)
	mgr, err := session.NewManager(session.Config{Issuer: own.ID, LoginRate: rate.Inf, SweepInterval: time.Hour, Now: clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mgr.Close() })
	src := &svid.StaticSource{SVID: own, Bundles: x509bundle.NewSet(ca.Bundle())}
	log := slog.New(slog.DiscardHandler)
	mw := &auth.Middleware{Sessions: mgr, Bundles: src, Now: clk.Now}
	mux := http.NewServeMux()
	mux.Handle("/v1/", server.NewHandler(server.Config{Sessions: mgr, Bundles: src, Admins: admins, Logger: log, Now: clk.Now}))
	mux.Handle("/secrets", mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := auth.CallerFrom(r.Context())
		_, _ = io.WriteString(w, c.Session.ID)
	}), auth.WithFreshLogin(time.Minute)))
	url := serveAPI(t, mux, src, log)

	alice := testpki.NewSource(ca.Issue(t, aliceID))
	store := new(tokenStore)
	newClient := func(opts ...client.Option) *client.Client {
		c, err := client.New(url, spiffeid.RequireFromString(serverID), alice, ca.Bundle(), append([]client.Option{client.WithTokenStore(store)}, opts...)...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c := newClient()
	secrets := func(c *client.Client) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/secrets", nil)
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	first, err := c.Login(ctx)
	require.NoError(t, err)
	status, body := secrets(c)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, first.SessionID, body)

	clk.Add(2 * time.Minute) // the login is too old for /secrets now
	status, body = secrets(newClient(client.WithAutoLogin(false)))
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, body, string(api.CodeInsufficientAuth), "without auto-login: the refusal as it came")

	status, body = secrets(c)
	require.Equal(t, http.StatusOK, status, body)
	require.NotEqual(t, first.SessionID, body, "a new, fresh session")
}
