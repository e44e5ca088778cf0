package client_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// TestRedirectRefused: whatever path a request takes (Do; a typed call with
// the session token; the login and the rebind that get one, asked for or
// done by themselves; the retry after a rebind; the calls made with the SVID
// alone, introspection carrying a token in its body and RevokeOwn) an answer
// that redirects is refused with an *Error (unexpected_response, the 3xx status), and the redirect is never
// followed: neither a server that would even pass the client's TLS checks
// nor another path of tetherd's sees a request, let alone a token.
func TestRedirectRefused(t *testing.T) {
	self := func(method string) func(*fakeTetherd, *http.Request) bool {
		return func(_ *fakeTetherd, r *http.Request) bool {
			return r.Method == method && r.URL.Path == api.PathSessionsSelf
		}
	}
	post := func(path string) func(*fakeTetherd, *http.Request) bool {
		return func(_ *fakeTetherd, r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == path }
	}
	loggedIn := func(t *testing.T, f *fixture) { f.login(t) }
	rotated := func(t *testing.T, f *fixture) {
		t.Helper()
		loggedIn(t, f)
		f.source.Set(f.ca.Issue(t, aliceID))
	}
	paths := []struct {
		name string
		// before prepares the client; redirect says which of tetherd's
		// answers redirects (the fake's lock is held); run is the path.
		before   func(*testing.T, *fixture)
		redirect func(*fakeTetherd, *http.Request) bool
		run      func(*testing.T, *fixture) error
	}{
		{"do", loggedIn, post("/echo"), func(t *testing.T, f *fixture) error {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "/echo", strings.NewReader("hello"))
			require.NoError(t, err)
			resp, err := f.client.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			return err
		}},
		{"typed-call", loggedIn, self(http.MethodGet), whoami},
		{"logout", loggedIn, self(http.MethodDelete), func(t *testing.T, f *fixture) error { return f.client.Logout(t.Context()) }},
		{"login", nil, post(api.PathSessions), func(t *testing.T, f *fixture) error {
			_, err := f.client.Login(t.Context())
			return err
		}},
		{"auto-login", nil, post(api.PathSessions), whoami},
		{"rebind", rotated, post(api.PathRebind), func(t *testing.T, f *fixture) error {
			_, err := f.client.Rebind(t.Context())
			return err
		}},
		{"rebind-on-rotation", rotated, post(api.PathRebind), whoami},
		{"retry-after-rebind", rotated, func(f *fakeTetherd, r *http.Request) bool {
			return f.rebinds > 0 && self(http.MethodGet)(f, r)
		}, whoami},
		{"introspect", loggedIn, post(api.PathIntrospect), func(t *testing.T, f *fixture) error {
			_, err := f.client.Introspect(t.Context(), f.token(t), fingerprint(f.source.SVID()))
			return err
		}},
		{"revoke-own", loggedIn, func(_ *fakeTetherd, r *http.Request) bool {
			return r.Method == http.MethodDelete && r.URL.Path == api.PathSessions
		}, func(t *testing.T, f *fixture) error {
			_, err := f.client.RevokeOwn(t.Context())
			return err
		}},
	}
	for _, p := range paths {
		for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
			for _, elsewhere := range []string{"another-server", "another-path"} {
				t.Run(p.name+"/"+http.StatusText(status)+"/"+elsewhere, func(t *testing.T) {
					f := setup(t, aliceID)
					target := newFakeTetherd(t, f.ca, serverID) // passes the client's TLS checks
					location := target.URL() + api.PathSessionsSelf
					if elsewhere == "another-path" {
						location = f.server.URL() + "/moved"
					}
					if p.before != nil {
						p.before(t, f)
					}
					redirected := 0
					f.server.redirectWhen(func(r *http.Request) bool {
						if p.redirect(f.server, r) {
							redirected++
							return true
						}
						return false
					}, status, location)

					err := p.run(t, f)
					var re *client.Error
					require.ErrorAs(t, err, &re)
					require.Equal(t, client.CodeUnexpectedResponse, re.Code)
					require.Equal(t, status, re.Status)
					require.Contains(t, re.Message, location)
					require.Contains(t, err.Error(), "refused")
					f.server.mu.Lock()
					require.Equal(t, 1, redirected, "tetherd redirected exactly once: the client did not ask again")
					f.server.mu.Unlock()

					require.Empty(t, target.requests(), "the redirect's target saw nothing")
					for _, r := range f.server.requests() {
						require.NotEqual(t, "/moved", r.path, "the redirect was followed on tetherd")
					}
					if token := f.token(t); token != "" {
						require.NotContains(t, err.Error(), token)
					}
				})
			}
		}
	}
}

// whoami is the typed call that needs a session: GET /v1/sessions/self.
func whoami(t *testing.T, f *fixture) error {
	_, err := f.client.Whoami(t.Context())
	return err
}
