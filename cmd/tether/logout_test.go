package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// TestLogoutAllAtTheCap: alice's sessions fill tetherd's per-identity cap
// and their tokens are elsewhere (other caches, other machines): she can
// neither log in nor run a command that needs a session, but her SVID alone
// ends them all (tether logout --all), and then she logs in again.
func TestLogoutAllAtTheCap(t *testing.T) {
	t.Parallel()
	s := newStack(t, "--max-sessions-per-identity", "2")
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)
	bobSession := bob.session("login")

	elsewhere := []string{filepath.Join(alice.dir, "laptop"), filepath.Join(alice.dir, "desktop")}
	for _, dir := range elsewhere {
		r := alice.runEnv(map[string]string{"TETHER_CACHE_DIR": dir}, "login")
		require.Equal(t, 0, r.code, r.String())
	}
	require.Len(t, aliceSessions(bob), 2, "the cap is full")

	alice.fail(1, []string{"login"}, "tetherd refuses a new session", "tether logout --all")
	alice.fail(1, []string{"sessions", "list"}, "tetherd refuses a new session")
	r := alice.ok("logout")
	require.Contains(t, r.stdout, "nothing to do", "no cached session here")

	var revoked api.RevokeResponse
	decodeJSON(t, alice.ok("logout", "--all", "-o", "json").stdout, &revoked)
	require.Equal(t, 2, revoked.Revoked)
	require.Empty(t, aliceSessions(bob), "every session of alice ended, and none was started")
	require.Equal(t, bobSession.SessionID, bob.session("whoami").SessionID, "bob's session is untouched")
	for _, dir := range elsewhere {
		alice.failEnv(map[string]string{"TETHER_CACHE_DIR": dir}, 1, []string{"whoami"}, "the session has ended")
	}

	// Out of the corner: login works again. logout --all also deletes the
	// cache file.
	me := alice.session("login")
	require.FileExists(t, alice.cacheFile())
	r = alice.ok("logout", "--all")
	require.Equal(t, "Ended 1 session of "+aliceID+" at "+s.URL()+"; no token is cached for it now.\n", r.stdout)
	require.NoFileExists(t, alice.cacheFile())
	require.NotContains(t, aliceSessions(bob), me.SessionID)
	alice.fail(1, []string{"whoami"}, "not logged in")
	r = alice.ok("logout", "--all")
	require.Contains(t, r.stdout, "Ended 0 sessions of "+aliceID)

	// carol, no admin, has no sessions to end; her SVID may still ask.
	carol := s.user(t, carolID)
	decodeJSON(t, carol.ok("logout", "--all", "-o", "json").stdout, &revoked)
	require.Zero(t, revoked.Revoked)
}

// TestLogoutTetherdDown: with tetherd gone, logout deletes the cache file
// anyway (logging out of this machine does not wait for tetherd) and exits
// 1, saying that tetherd was not told and what to do about it.
func TestLogoutTetherdDown(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	bob := s.user(t, bobID)
	alice.ok("login")
	bob.ok("login")
	s.stop()

	alice.fail(1, []string{"logout"}, "cannot reach tetherd at "+s.URL(), "the cached token is deleted anyway",
		"the session stays live at tetherd until it idles out", "tether logout --all")
	require.NoFileExists(t, alice.cacheFile())
	r := alice.ok("logout")
	require.Contains(t, r.stdout, "nothing to do")

	bob.fail(1, []string{"logout", "--all"}, "cannot reach tetherd at "+s.URL(), "the cached token is deleted anyway",
		"no session was ended", "tether logout --all")
	require.NoFileExists(t, bob.cacheFile())
	_, err := os.Stat(bob.cache)
	require.NoError(t, err, "the cache folder stays")
}
