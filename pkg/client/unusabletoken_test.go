package client_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/client"
	"github.com/tetherproject/tether/session"
)

// unusableTokens cannot be tokens of tetherd: outside the compact JWS
// alphabet (base64url and dots), or longer than it ever makes one.
var unusableTokens = map[string]string{
	"control":   "\n\r\x00 x",
	"space":     "a.b c",
	"quote":     `a"b`,
	"non-ascii": "a.é.b",
	"too-long":  strings.Repeat("a", 2<<20),
	"one-over":  strings.Repeat("a", client.MaxTokenBytes+1),
}

// TestUnusableStoredToken: a stored token that cannot be a token is never
// sent. A request that may log in treats it as no session: it logs in and
// stores the new token over it. Without auto-login it is ErrUnusableToken
// (an ErrNoSession); Rebind says the same; Logout forgets it.
func TestUnusableStoredToken(t *testing.T) {
	ctx := t.Context()
	for name, bad := range unusableTokens {
		t.Run(name, func(t *testing.T) {
			f := setup(t, aliceID)
			require.NoError(t, f.store.SaveToken(bad))
			me, err := f.client.Whoami(ctx)
			require.NoError(t, err)
			require.Equal(t, aliceID, me.SPIFFEID)
			logins, _ := f.server.counts()
			require.Equal(t, 1, logins, "logged in, as with no token")
			require.True(t, client.UsableToken(f.token(t)), "the new token is stored over the bad one")
			for _, r := range f.server.requests() {
				for _, a := range r.authorization {
					require.NotContains(t, a, bad, "the bad token is never sent")
				}
			}

			off := f.newClient(t, f.source, client.WithTokenStore(f.store), client.WithAutoLogin(false))
			require.NoError(t, f.store.SaveToken(bad))
			before := len(f.server.requests())
			_, err = off.Whoami(ctx)
			require.ErrorIs(t, err, client.ErrUnusableToken)
			require.ErrorIs(t, err, client.ErrNoSession)
			require.NotContains(t, err.Error(), bad)
			_, err = off.Rebind(ctx)
			require.ErrorIs(t, err, client.ErrUnusableToken)
			require.Len(t, f.server.requests(), before, "nothing was sent")
			require.NoError(t, off.Logout(ctx))
			require.Empty(t, f.token(t), "logout forgets it")
			require.Len(t, f.server.requests(), before, "nothing was sent")
		})
	}
}

// TestUsableTokenIsTetherds: UsableToken accepts what tetherd looks at and
// nothing else: at most session.MaxTokenBytes of session.InJWSAlphabet.
func TestUsableTokenIsTetherds(t *testing.T) {
	require.Equal(t, session.MaxTokenBytes, client.MaxTokenBytes)
	for c := range 256 {
		s := "ab" + string([]byte{byte(c)}) + "cd"
		require.Equal(t, session.InJWSAlphabet(s), client.UsableToken(s), "byte %#x", c)
	}
	require.True(t, client.UsableToken(strings.Repeat("a.", client.MaxTokenBytes/2)))
	require.False(t, client.UsableToken(""))
	for _, bad := range unusableTokens {
		require.False(t, client.UsableToken(bad))
	}
}
