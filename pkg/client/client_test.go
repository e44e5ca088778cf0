package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/svid"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	serverID = "spiffe://example.org/tetherd"
	aliceID  = "spiffe://example.org/admin/alice"
	bobID    = "spiffe://example.org/admin/bob"
)

// fixture is the package's one API fixture: a fakeTetherd of a CA of
// example.org, and a client of it presenting a rotating SVID of id and
// keeping its token in store (unless opts say otherwise).
type fixture struct {
	ca     *testpki.CA
	server *fakeTetherd
	source *testpki.Source
	store  *tokenStore
	client *client.Client
}

func setup(t *testing.T, id string, opts ...client.Option) *fixture {
	t.Helper()
	ca := testpki.NewCA(t, "example.org")
	f := &fixture{ca: ca, server: newFakeTetherd(t, ca, serverID), store: new(tokenStore)}
	f.source = testpki.NewSource(ca.Issue(t, id))
	f.client = f.newClient(t, f.source, append([]client.Option{client.WithTokenStore(f.store)}, opts...)...)
	return f
}

// login logs the client in and returns its session.
func (f *fixture) login(t *testing.T) *api.Session {
	t.Helper()
	s, err := f.client.Login(t.Context())
	require.NoError(t, err)
	return s
}

// token is the token the client stores.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	token, err := f.store.LoadToken()
	require.NoError(t, err)
	return token
}

func (f *fixture) newClient(t *testing.T, src x509svid.Source, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(f.server.URL(), spiffeid.RequireFromString(serverID), src, f.ca.Bundle(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func fingerprint(s *x509svid.SVID) string { return svid.Fingerprint(s.Certificates[0]) }

func requireAPIError(t *testing.T, err error, code api.Code, status int) {
	t.Helper()
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, code, apiErr.Code)
	require.Equal(t, status, apiErr.Status)
}

func TestCalls(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	store := f.store

	s := f.login(t)
	require.Equal(t, aliceID, s.SPIFFEID)
	require.Equal(t, fingerprint(f.source.SVID()), s.CNF.X5TS256)
	token, _ := store.LoadToken()
	require.NotEmpty(t, token, "login stores the token")

	me, err := f.client.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, s.SessionID, me.SessionID)

	// bob logs in twice through his own client.
	bobSource := testpki.NewSource(f.ca.Issue(t, bobID))
	bob := f.newClient(t, bobSource)
	for range 2 {
		_, err := bob.Login(ctx)
		require.NoError(t, err)
	}

	all, err := f.client.List(ctx, spiffeid.ID{})
	require.NoError(t, err)
	require.Len(t, all, 3)
	bobs, err := f.client.List(ctx, spiffeid.RequireFromString(bobID))
	require.NoError(t, err)
	require.Len(t, bobs, 2)
	for _, b := range bobs {
		require.Equal(t, bobID, b.SPIFFEID)
	}

	require.NoError(t, f.client.Revoke(ctx, bobs[0].SessionID))
	err = f.client.Revoke(ctx, bobs[0].SessionID)
	requireAPIError(t, err, api.CodeNotFound, http.StatusNotFound)
	require.ErrorIs(t, err, &api.Error{Code: api.CodeNotFound})

	n, err := f.client.RevokeIdentity(ctx, spiffeid.RequireFromString(bobID))
	require.NoError(t, err)
	require.Equal(t, 1, n)

	in, err := f.client.Introspect(ctx, token, fingerprint(f.source.SVID()))
	require.NoError(t, err)
	require.True(t, in.Active)
	require.Equal(t, s.SessionID, in.Session.SessionID)
	in, err = f.client.Introspect(ctx, token, fingerprint(bobSource.SVID()))
	require.NoError(t, err)
	require.False(t, in.Active, "bound to another certificate")

	require.NoError(t, f.client.Logout(ctx))
	token, _ = store.LoadToken()
	require.Empty(t, token, "logout forgets the token")
	in, err = f.client.Introspect(ctx, "", "")
	require.NoError(t, err)
	require.False(t, in.Active)
	logins, _ := f.server.counts()
	require.NoError(t, f.client.Logout(ctx), "logging out without a session is not an error")
	logins2, _ := f.server.counts()
	require.Equal(t, logins, logins2, "logout never logs in")
}

func TestNew(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	src := ca.Issue(t, aliceID)
	id := spiffeid.RequireFromString(serverID)
	for name, url := range map[string]string{
		"fail/http":     "http://127.0.0.1:8443",
		"fail/no-host":  "https://",
		"fail/query":    "https://127.0.0.1:8443/?a=b",
		"fail/userinfo": "https://u:p@127.0.0.1:8443",
		"fail/garbage":  "://",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := client.New(url, id, src, ca.Bundle())
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "client: "), err.Error())
		})
	}
	t.Run("fail/no-server-id", func(t *testing.T) {
		_, err := client.New("https://127.0.0.1:8443", spiffeid.ID{}, src, ca.Bundle())
		require.Error(t, err)
	})
	t.Run("fail/no-sources", func(t *testing.T) {
		_, err := client.New("https://127.0.0.1:8443", id, nil, nil)
		require.Error(t, err)
	})
	t.Run("ok", func(t *testing.T) {
		c, err := client.New("https://127.0.0.1:8443/", id, src, ca.Bundle())
		require.NoError(t, err)
		require.Equal(t, "https://127.0.0.1:8443", c.ServerURL())
		require.Equal(t, id, c.ServerID())
		require.NoError(t, c.Close())
		require.NoError(t, c.Close(), "Close is safe twice")
	})
}

func TestRefusesOtherServerID(t *testing.T) {
	f := setup(t, aliceID)
	other, err := client.New(f.server.URL(), spiffeid.RequireFromString("spiffe://example.org/not-tetherd"), f.source, f.ca.Bundle())
	require.NoError(t, err)
	defer func() { _ = other.Close() }()

	_, err = other.Login(t.Context())
	var idErr *client.ServerError
	require.ErrorAs(t, err, &idErr)
	require.NoError(t, idErr.Err, "a valid SVID of another ID")
	require.Equal(t, serverID, idErr.Got.String())
	require.Equal(t, "spiffe://example.org/not-tetherd", idErr.Want.String())
	require.Zero(t, f.server.count("POST "+api.PathSessions), "no request reached the server")
}

func TestRefusesUntrustedServer(t *testing.T) {
	f := setup(t, aliceID)
	// A bundle of another CA of the same trust domain.
	stranger := testpki.NewCA(t, "example.org")
	c, err := client.New(f.server.URL(), spiffeid.RequireFromString(serverID), f.source, stranger.Bundle())
	require.NoError(t, err)
	defer func() { _ = c.Close() }()

	_, err = c.Login(t.Context())
	var certErr *client.ServerError
	require.ErrorAs(t, err, &certErr)
	require.Error(t, certErr.Err, "not a valid SVID under the bundle")
	require.Zero(t, f.server.count("POST "+api.PathSessions))
}

func TestTypedErrors(t *testing.T) {
	f := setup(t, "spiffe://example.org/workload/demo")
	_, err := f.client.Login(t.Context())
	requireAPIError(t, err, api.CodeNotAdmin, http.StatusForbidden)
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.Contains(t, apiErr.Message, "matches no --admin pattern")
	require.True(t, strings.HasPrefix(err.Error(), "client: login: not_admin: "), err.Error())

	// The round tripper's login failure is typed too.
	_, err = f.client.Whoami(t.Context())
	requireAPIError(t, err, api.CodeNotAdmin, http.StatusForbidden)
}

func TestDoLogsInAndAttachesToken(t *testing.T) {
	f := setup(t, aliceID)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "/echo", strings.NewReader("hello"))
	require.NoError(t, err)
	resp, err := f.client.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "hello", string(body))
	logins, _ := f.server.counts()
	require.Equal(t, 1, logins)
	require.Empty(t, req.Header.Get("Authorization"), "the caller's request is not modified")
}

func TestRotationRebinds(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	first, err := f.client.Whoami(ctx) // logs in
	require.NoError(t, err)
	oldFP := fingerprint(f.source.SVID())
	require.Equal(t, oldFP, first.CNF.X5TS256)

	// The SVID rotates: same SPIFFE ID, new key and leaf.
	rotated := f.ca.Issue(t, aliceID)
	f.source.Set(rotated)
	newFP := fingerprint(rotated)

	after, err := f.client.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, first.SessionID, after.SessionID, "the same session, rebound")
	require.Equal(t, newFP, after.CNF.X5TS256)
	require.Equal(t, newFP, f.server.lastPeerFP(), "a new connection presents the new leaf")
	logins, rebinds := f.server.counts()
	require.Equal(t, 1, logins)
	require.Equal(t, 1, rebinds)
}

func TestRotationConcurrentRebindOnce(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	first, err := f.client.Whoami(ctx)
	require.NoError(t, err)
	f.source.Set(f.ca.Issue(t, aliceID))

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			s, err := f.client.Whoami(ctx)
			if err == nil && s.SessionID != first.SessionID {
				err = errors.New("another session")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	logins, rebinds := f.server.counts()
	require.Equal(t, 1, logins)
	require.Equal(t, 1, rebinds, "concurrent requests rebind once")
}

func TestSessionEndedLogsInAgain(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	first, err := f.client.Whoami(ctx)
	require.NoError(t, err)
	f.server.endAll()

	second, err := f.client.Whoami(ctx)
	require.NoError(t, err)
	require.NotEqual(t, first.SessionID, second.SessionID)
	logins, _ := f.server.counts()
	require.Equal(t, 2, logins)
}

func TestInvalidTokenLogsInAgain(t *testing.T) {
	// A token that is not the caller's (another identity's, or from before a
	// restart of tetherd) is replaced by a session of the caller's own.
	ctx := t.Context()
	f := setup(t, aliceID)
	bobStore := new(tokenStore)
	bob := f.newClient(t, testpki.NewSource(f.ca.Issue(t, bobID)), client.WithTokenStore(bobStore))
	bobSession, err := bob.Login(ctx)
	require.NoError(t, err)
	bobToken, _ := bobStore.LoadToken()

	aliceStore := new(tokenStore)
	require.NoError(t, aliceStore.SaveToken(bobToken))
	alice := f.newClient(t, f.source, client.WithTokenStore(aliceStore))
	me, err := alice.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, aliceID, me.SPIFFEID, "bob's token never acts as bob for alice")
	require.NotEqual(t, bobSession.SessionID, me.SessionID)
}

func TestNeverLoops(t *testing.T) {
	f := setup(t, aliceID)
	f.login(t)
	f.server.mu.Lock()
	f.server.alwaysEnded = true
	f.server.mu.Unlock()

	_, err := f.client.Whoami(t.Context())
	requireAPIError(t, err, api.CodeSessionEnded, http.StatusUnauthorized)
	require.Equal(t, 2, f.server.count("GET "+api.PathSessionsSelf), "one try and one retry")
	logins, _ := f.server.counts()
	require.Equal(t, 2, logins, "one login, then one login again")
}

func TestNonReplayableBodyIsNotRetried(t *testing.T) {
	f := setup(t, aliceID)
	f.login(t)
	f.server.endAll()

	// A body without GetBody cannot be sent twice.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.server.URL()+"/echo", io.NopCloser(strings.NewReader("once")))
	require.NoError(t, err)
	resp, err := f.client.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, string(body), string(api.CodeSessionEnded), "the answer is handed back intact")
	require.Equal(t, 1, f.server.count("POST /echo"))

	// The session was recovered for the next request all the same.
	req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, f.server.URL()+"/echo", io.NopCloser(strings.NewReader("again")))
	require.NoError(t, err)
	resp, err = f.client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestReplayableBodyIsRetried(t *testing.T) {
	f := setup(t, aliceID)
	f.login(t)
	f.source.Set(f.ca.Issue(t, aliceID))

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.server.URL()+"/echo", strings.NewReader("twice"))
	require.NoError(t, err)
	resp, err := f.client.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "twice", string(body), "the body is sent again in full")
	require.Equal(t, 2, f.server.count("POST /echo"))
}

func TestAutoLoginOff(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID, client.WithAutoLogin(false))
	_, err := f.client.Whoami(ctx)
	require.ErrorIs(t, err, client.ErrNoSession)
	logins, _ := f.server.counts()
	require.Zero(t, logins)

	_, err = f.client.Login(ctx)
	require.NoError(t, err)

	// Rotation is still recovered: it keeps the session.
	f.source.Set(f.ca.Issue(t, aliceID))
	_, err = f.client.Whoami(ctx)
	require.NoError(t, err)

	f.server.endAll()
	_, err = f.client.Whoami(ctx)
	requireAPIError(t, err, api.CodeSessionEnded, http.StatusUnauthorized)
	logins, rebinds := f.server.counts()
	require.Equal(t, 1, logins)
	require.Equal(t, 1, rebinds)

	_, err = f.client.Rebind(ctx)
	requireAPIError(t, err, api.CodeSessionEnded, http.StatusUnauthorized)
	require.NoError(t, f.client.Logout(ctx), "an ended session is logged out already")
	_, err = f.client.Rebind(ctx)
	require.ErrorIs(t, err, client.ErrNoSession)
}

func TestExplicitRebind(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	s := f.login(t)
	f.source.Set(f.ca.Issue(t, aliceID))
	r, err := f.client.Rebind(ctx)
	require.NoError(t, err)
	require.Equal(t, s.SessionID, r.SessionID)
	require.Equal(t, fingerprint(f.source.SVID()), r.CNF.X5TS256)
}

func TestTokenGoesOnlyToTetherd(t *testing.T) {
	f := setup(t, aliceID)
	f.login(t)

	// Another server that would even pass the TLS checks.
	other := newFakeTetherd(t, f.ca, serverID)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, other.URL()+"/echo", nil)
	require.NoError(t, err)
	_, err = f.client.Do(req)
	require.Error(t, err)
	require.Contains(t, err.Error(), "refusing to send the session token")
	require.Zero(t, other.count("GET /echo"))
}

func TestErrorsNeverShowTheToken(t *testing.T) {
	ctx := t.Context()
	f := setup(t, aliceID)
	store := f.store
	f.login(t)
	token, _ := store.LoadToken()
	f.server.mu.Lock()
	f.server.alwaysEnded = true
	f.server.mu.Unlock()

	_, err := f.client.Whoami(ctx)
	require.Error(t, err)
	require.NotContains(t, err.Error(), token)
	require.NotContains(t, fmt.Sprintf("%v %+v %#v", f.client, f.client, f.client), token, "the client never prints its token")
}

func TestContextCancelled(t *testing.T) {
	f := setup(t, aliceID)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.client.RevokeOwn(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, f.server.requests(), "RevokeOwn sent nothing")
	_, err = f.client.Whoami(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

// tokenStore is a TokenStore the tests can share between clients and read.
type tokenStore struct {
	mu    sync.Mutex
	token string
}

func (s *tokenStore) LoadToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, nil
}

func (s *tokenStore) SaveToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
	return nil
}

func (s *tokenStore) DeleteToken() error { return s.SaveToken("") }
