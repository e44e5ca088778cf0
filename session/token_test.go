package session

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// TestMintIsAJWS: a minted token is a compact JWS that go-jose verifies
// with our public key (EdDSA, RFC 8037), with the header {"alg":"EdDSA","kid":…}
// (16 characters of kid, no typ) and the contract's claims as they were
// given, roles included and auth_time left out.
func TestMintIsAJWS(t *testing.T) {
	k, err := NewKey()
	require.NoError(t, err)
	c := &claims{Issuer: "spiffe://example.org/tetherd", Audience: "spiffe://example.org/tetherd",
		Subject: "spiffe://example.org/admin/alice", ID: "dyo3ql73cyrlb6vmvtpeexty3q", IssuedAt: 1796108879,
		Expiry: 1796112479, CNF: api.CNF{X5TS256: "-huJ20FnLgRYlgSghph665HVjiZPsVKIR9YocXbydT0"}, AuthTime: 1796108879,
		Roles: []string{"restore"}}
	for range 3 {
		tok, err := k.mint(c)
		require.NoError(t, err)
		require.Equal(t, 2, strings.Count(tok, "."))
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA})
		require.NoError(t, err)
		payload, err := jws.Verify(k.Public())
		require.NoError(t, err)
		require.JSONEq(t, `{"iss":"spiffe://example.org/tetherd","aud":"spiffe://example.org/tetherd",
			"sub":"spiffe://example.org/admin/alice","jti":"dyo3ql73cyrlb6vmvtpeexty3q","iat":1796108879,
			"exp":1796112479,"cnf":{"x5t#S256":"-huJ20FnLgRYlgSghph665HVjiZPsVKIR9YocXbydT0"},"roles":["restore"]}`, string(payload))
		h := jws.Signatures[0].Protected
		require.Equal(t, "EdDSA", h.Algorithm)
		require.Len(t, h.KeyID, 16)
		require.NotContains(t, h.ExtraHeaders, jose.HeaderType)
		head, err := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
		require.NoError(t, err)
		require.Equal(t, `{"alg":"EdDSA","kid":"`+h.KeyID+`"}`, string(head))
		require.False(t, k.otherKey(tok), "our own key")
	}
	other, err := NewKey()
	require.NoError(t, err)
	tok, err := other.mint(c)
	require.NoError(t, err)
	require.True(t, k.otherKey(tok), "another instance's key")
}

// TestRecordSignature: a record's signature verifies only with its key and
// only over its payload, and no token signature passes for one (Ed25519ctx's
// context separates them), nor one the other way round.
func TestRecordSignature(t *testing.T) {
	k, err := NewKey()
	require.NoError(t, err)
	other, err := NewKey()
	require.NoError(t, err)
	payload := []byte(`{"id":"dyo3ql73cyrlb6vmvtpeexty3q","iss":"spiffe://example.org/tetherd"}`)
	sig, err := k.SignRecord(payload)
	require.NoError(t, err)
	require.True(t, VerifyRecord(k.Public(), payload, sig))

	require.False(t, VerifyRecord(other.Public(), payload, sig), "another replica's key")
	require.False(t, VerifyRecord(nil, payload, sig), "no key")
	require.False(t, VerifyRecord(k.Public(), append([]byte{' '}, payload...), sig), "another payload")
	require.False(t, VerifyRecord(k.Public(), payload, sig[:63]), "a short signature")
	bad := append([]byte(nil), sig...)
	bad[10] ^= 1
	require.False(t, VerifyRecord(k.Public(), payload, bad), "a tampered signature")

	// A token is pure Ed25519 over its signing input: signing a record's
	// payload as a token does not make a record signature, and a record
	// signature does not verify as a token's.
	tok, err := k.sign(payload)
	require.NoError(t, err)
	input := tok[:strings.LastIndexByte(tok, '.')]
	tokSig, err := base64.RawURLEncoding.DecodeString(tok[len(input)+1:])
	require.NoError(t, err)
	require.False(t, VerifyRecord(k.Public(), []byte(input), tokSig), "a token's signature taken for a record's")
	recSig, err := k.SignRecord([]byte(input))
	require.NoError(t, err)
	require.False(t, ed25519.Verify(k.Public(), []byte(input), recSig), "a record's signature taken for a token's")
}

// TestAppendClaims: the claims of a token are what encoding/json writes,
// byte for byte, whatever they hold: roles or none, a rebind's nonce or
// none, strings that need escaping, any integer.
func TestAppendClaims(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2)) //nolint:gosec // G404: seeded test inputs, reproducible; nothing secret
	alphabet := []rune("aZ09-_./:#\"\\<>&\x00\x1f\x7f é\u2028\u2029\ufffd")
	str := func() string {
		r := make([]rune, rng.IntN(12))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if rng.IntN(20) == 0 {
			return string(r) + "\xff" // invalid UTF-8
		}
		return string(r)
	}
	ints := []int64{0, 1, -1, 1796108879, math.MaxInt64, math.MinInt64}
	for range 2000 {
		c := &claims{Issuer: str(), Audience: str(), Subject: str(), ID: str(),
			IssuedAt: ints[rng.IntN(len(ints))], Expiry: rng.Int64() - rng.Int64(),
			CNF: api.CNF{X5TS256: str()}, AuthTime: rng.Int64()}
		switch rng.IntN(3) {
		case 0: // none
		case 1:
			c.Roles = []string{}
		default:
			for range 1 + rng.IntN(3) {
				c.Roles = append(c.Roles, str())
			}
		}
		if rng.IntN(2) == 0 {
			c.RebindNonce = str()
		}
		want, err := json.Marshal(c)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendClaims(nil, c)), "%#v", c)
	}
}

// FuzzAppendClaims: appendClaims is json.Marshal for any strings.
func FuzzAppendClaims(f *testing.F) {
	f.Add("spiffe://example.org/tetherd", "spiffe://example.org/admin/alice", "dyo3ql73cyrlb6vmvtpeexty3q", "restore", "", int64(1796108879))
	f.Add("<&>", "\u2028", "\xff", "\"", "n", int64(-1))
	f.Fuzz(func(t *testing.T, iss, sub, jti, role, nonce string, iat int64) {
		c := &claims{Issuer: iss, Audience: iss, Subject: sub, ID: jti, IssuedAt: iat, Expiry: iat + 1,
			CNF: api.CNF{X5TS256: jti}, Roles: []string{role}, RebindNonce: nonce}
		if role == "" {
			c.Roles = nil
		}
		want, err := json.Marshal(c)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendClaims(nil, c)))
	})
}

// TestSameToken: sameToken is string equality, for lengths around and
// across the word size, with a difference at every position.
func TestSameToken(t *testing.T) {
	rnd := mrand.NewChaCha8([32]byte{1}) // seeded test inputs, reproducible; nothing secret
	for n := range 42 {
		b := make([]byte, n)
		_, _ = rnd.Read(b)
		a := string(b)
		require.True(t, sameToken(a, string(b)), "length %d", n)
		require.False(t, sameToken(a, a+"x"), "length %d and %d", n, n+1)
		for i := range n {
			c := append([]byte(nil), b...)
			c[i] ^= 1 << (i % 8)
			require.False(t, sameToken(a, string(c)), "length %d, differing at %d", n, i)
		}
	}
}

// TestTokenMemo: a check through a memo remembers the token it accepts and
// does not hash it again (a remembered token stands for the hash it was
// remembered with), hashes any other token, remembers no refused one, and
// refuses a remembered token of an ended session.
func TestTokenMemo(t *testing.T) {
	var memo TokenMemo
	memo.last.Store(&memoEntry{token: "a.b.c", hash: TokenHash{7}})
	hashOf := func(memo *TokenMemo, tok string) TokenHash { h, _ := memo.hash(tok, nil); return h }
	require.Equal(t, TokenHash{7}, hashOf(&memo, "a.b.c"), "a remembered token is not hashed")
	require.Equal(t, hashToken("a.b.d"), hashOf(&memo, "a.b.d"), "any other is")
	require.Equal(t, hashToken("a.b.c"), hashOf(nil, "a.b.c"), "no memo: hashed")

	m, _ := NewTestManager(t, nil)
	ctx := context.Background()
	alice := Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/alice"), Fingerprint: "fp-alice"}
	tok1, info1, err := m.Login(ctx, alice)
	require.NoError(t, err)
	tok2, info2, err := m.Login(ctx, alice)
	require.NoError(t, err)

	memo = TokenMemo{}
	check := func(tok string) (Use, error) { return m.CheckWith(ctx, tok, alice, CheckOptions{Memo: &memo}) }
	u, err := check(tok1)
	require.NoError(t, err)
	require.Equal(t, info1.ID, u.Info.ID)
	require.True(t, memo.Remembers(tok1), "an accepted token is remembered")
	u, err = check(tok1)
	require.NoError(t, err)
	require.Equal(t, info1.ID, u.Info.ID, "remembered")

	u, err = check(tok2)
	require.NoError(t, err)
	require.Equal(t, info2.ID, u.Info.ID, "another token of the same connection opens its own session")
	require.True(t, memo.Remembers(tok2))
	require.False(t, memo.Remembers(tok1))

	last := "A"
	if strings.HasSuffix(tok2, last) {
		last = "B"
	}
	forged := tok2[:len(tok2)-1] + last // the same length: compared, not hashed at once
	_, err = check(forged)
	requireCode(t, err, api.CodeInvalidToken)
	require.True(t, memo.Remembers(tok2), "a refused token is not remembered")

	require.NoError(t, m.Revoke(ctx, info2.ID))
	_, err = check(tok2)
	requireCode(t, err, api.CodeSessionEnded)
}

// TestTokenMemoEntry: with the in-process store, the memo also remembers
// the entry its token opened and the check takes it from there, without
// the store's index, as long as no change replaced or removed it; a memo
// never hands one store's entry to another store's check.
func TestTokenMemoEntry(t *testing.T) {
	m, _ := NewTestManager(t, nil)
	ctx := context.Background()
	alice := Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/alice"), Fingerprint: "fp-alice"}
	tok, info, err := m.Login(ctx, alice)
	require.NoError(t, err)
	var memo TokenMemo
	check := func(m *Manager) (Use, error) { return m.CheckWith(ctx, tok, alice, CheckOptions{Memo: &memo}) }
	_, err = check(m)
	require.NoError(t, err)
	e := m.mem.entryByToken(hashToken(tok))
	require.Same(t, e, memo.last.Load().e, "the memo holds the entry the token opened")

	// Taken from the memo, not the index: a check finds the remembered
	// entry even where the index no longer has it (a test's doing: a
	// change always marks the entry it takes out gone).
	ts := m.mem.tokenShard(e.rec.Binding.Token)
	ts.mu.Lock()
	delete(ts.m, e.rec.Binding.Token)
	ts.mu.Unlock()
	u, err := check(m)
	require.NoError(t, err, "the remembered entry, not the index")
	require.Same(t, e, u.e)
	ts.mu.Lock()
	ts.m[e.rec.Binding.Token] = e
	ts.mu.Unlock()

	// A replaced entry is gone: the next check finds its successor.
	cur, ok := m.store.ByID(info.ID)
	require.True(t, ok)
	require.NoError(t, m.store.Update(ctx, cur, cur, nil))
	u, err = check(m)
	require.NoError(t, err)
	require.NotSame(t, e, u.e)
	require.Same(t, u.e, memo.last.Load().e, "the memo follows the entry that replaced it")

	// Another Manager (another store) never takes this store's entry,
	// though the memo remembers the token.
	other, _ := NewTestManager(t, nil)
	_, err = check(other)
	requireCode(t, err, api.CodeInvalidToken)

	// An ended session's entry is gone: refused.
	require.NoError(t, m.Revoke(ctx, info.ID))
	_, err = check(m)
	requireCode(t, err, api.CodeSessionEnded)
}

func requireCode(t *testing.T, err error, code api.Code) {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, code, e.Code)
}
