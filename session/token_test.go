package session

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// TestMintIsAJWS: a minted token is a compact JWS that go-jose verifies
// with our public key (ES256, R||S), with the header {"alg":"ES256","kid":…}
// (16 characters of kid, no typ) and the contract's claims as they were
// given, roles included and auth_time left out.
func TestMintIsAJWS(t *testing.T) {
	k, err := NewKey()
	require.NoError(t, err)
	c := &claims{Issuer: "spiffe://example.org/tetherd", Audience: "spiffe://example.org/tetherd",
		Subject: "spiffe://example.org/admin/alice", ID: "dyo3ql73cyrlb6vmvtpeexty3q", IssuedAt: 1796108879,
		Expiry: 1796112479, CNF: api.CNF{X5TS256: "-huJ20FnLgRYlgSghph665HVjiZPsVKIR9YocXbydT0"}, AuthTime: 1796108879,
		Roles: []string{"restore"}}
	for range 20 { // ECDSA signatures are random: R and S of any length pad to 32 bytes
		tok, err := k.mint(c)
		require.NoError(t, err)
		require.Equal(t, 2, strings.Count(tok, "."))
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
		require.NoError(t, err)
		payload, err := jws.Verify(&k.key.PublicKey)
		require.NoError(t, err)
		require.JSONEq(t, `{"iss":"spiffe://example.org/tetherd","aud":"spiffe://example.org/tetherd",
			"sub":"spiffe://example.org/admin/alice","jti":"dyo3ql73cyrlb6vmvtpeexty3q","iat":1796108879,
			"exp":1796112479,"cnf":{"x5t#S256":"-huJ20FnLgRYlgSghph665HVjiZPsVKIR9YocXbydT0"},"roles":["restore"]}`, string(payload))
		h := jws.Signatures[0].Protected
		require.Equal(t, "ES256", h.Algorithm)
		require.Len(t, h.KeyID, 16)
		require.NotContains(t, h.ExtraHeaders, jose.HeaderType)
		head, err := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
		require.NoError(t, err)
		require.Equal(t, `{"alg":"ES256","kid":"`+h.KeyID+`"}`, string(head))
		require.False(t, k.otherKey(tok), "our own key")
	}
	other, err := NewKey()
	require.NoError(t, err)
	tok, err := other.mint(c)
	require.NoError(t, err)
	require.True(t, k.otherKey(tok), "another instance's key")
}
