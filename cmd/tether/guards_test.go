package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/svid"
)

// TestSessionIDArgumentChecked: a SESSION_ID that no session can have is a
// usage error that sends nothing: 'sessions revoke self' does not log the
// caller out (DELETE /v1/sessions/self), and 'self/rebind' reaches no other
// route.
func TestSessionIDArgumentChecked(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	me := alice.session("login")
	for _, verb := range []string{"revoke", "approve", "deny"} {
		for _, id := range []string{"self", "self/rebind", "..", ".", "", "a b", "x%2Fy", "-"} {
			args := []string{"sessions", verb, id}
			if id == "-" {
				// A valid ID of the safe set goes to tetherd, which knows none.
				alice.fail(1, args, "no live session -")
				continue
			}
			r := alice.fail(2, args, "sessions "+verb+": ")
			require.Empty(t, r.stdout)
			require.NotContains(t, r.stderr, "Revoked")
		}
	}
	require.Equal(t, me.SessionID, alice.session("whoami").SessionID, "alice's own session is untouched")
	require.Len(t, alice.list(), 1)
}

// TestRefusedRebindLogsInAnew: tetherd refuses to rebind the cached session
// to a leaf that is not strictly newer than the bound one (the user went
// back to an older SVID, or two leaves share a second): the command logs in
// anew with the SVID it has and goes on; the old session keeps its binding
// and idles out. whoami, which never logs in, says why it cannot go on.
func TestRefusedRebindLogsInAnew(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	older := alice.svid
	alice.rotate()
	first := alice.session("login")
	newer := alice.svid

	// Back to the older SVID.
	alice.svid = older
	alice.files = s.ca.WriteFiles(t, alice.dir, "svid", older)
	alice.fail(1, []string{"whoami"}, "not newer")
	list := alice.list("--spiffe-id", aliceID)
	require.Len(t, list, 2, "a new session beside the old one")
	me := alice.session("whoami")
	require.NotEqual(t, first.SessionID, me.SessionID)
	require.Equal(t, svid.Fingerprint(older.Certificates[0]), me.CNF.X5TS256, "bound to the leaf presented now")
	for _, l := range list {
		if l.SessionID == first.SessionID {
			require.Equal(t, svid.Fingerprint(newer.Certificates[0]), l.CNF.X5TS256, "the old session keeps its binding")
		}
	}
}

// TestUnusableCachedToken: a cache file whose token cannot be a token (not
// of the JWS alphabet, or over 4 KiB) is no session: a command that needs
// one logs in by itself and writes the new token over it; whoami exits 1
// saying so; logout has nothing to do. The bad token is never printed.
func TestUnusableCachedToken(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	plant := func(token string) {
		t.Helper()
		b, err := json.Marshal(cacheFile{Server: s.URL(), SPIFFEID: aliceID, Token: token})
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(alice.cache, 0o700))
		require.NoError(t, os.WriteFile(alice.cacheFile(), b, 0o600))
	}
	for name, bad := range map[string]string{
		"control":   "\n\r\x00 x",
		"over-4KiB": strings.Repeat("a", 5000),  // UsableToken refuses it
		"too-long":  strings.Repeat("a", 2<<20), // the file is over its bound: not read whole
	} {
		plant(bad)
		r := alice.fail(1, []string{"whoami"}, "the token cache "+alice.cacheFile()+" holds no usable session", "tether login")
		require.NotContains(t, r.stderr, bad, name)

		plant(bad)
		r = alice.ok("logout")
		require.Contains(t, r.stdout, "nothing to do", name)
		require.NoFileExists(t, alice.cacheFile(), name)

		plant(bad)
		list := alice.list("--spiffe-id", aliceID)
		require.Len(t, list, 1, "%s: logged in by itself", name)
		token := alice.cachedToken()
		require.True(t, client.UsableToken(token), "%s: the new token is cached over the bad one", name)
		require.Equal(t, list[0].SessionID, alice.session("whoami").SessionID, name)
		require.Equal(t, token, alice.cachedToken(), name)
		alice.ok("logout")
	}
}
