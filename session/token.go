package session

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/api"
)

// MaxTokenBytes is the longest token looked at. Ours are about 600 bytes;
// anything far longer is refused before it is hashed or parsed.
const MaxTokenBytes = 4096

// claims is the token's payload. Types are strict: a claim of the wrong JSON
// type fails decoding and the token is invalid.
type claims struct {
	Issuer   string  `json:"iss"`
	Audience string  `json:"aud"`
	Subject  string  `json:"sub"`
	ID       string  `json:"jti"`
	IssuedAt int64   `json:"iat"`
	Expiry   int64   `json:"exp"`
	CNF      api.CNF `json:"cnf"`
}

// tokenKeys is the signing key of this process and the matching verifier.
type tokenKeys struct {
	kid    string
	signer jose.Signer
	public *ecdsa.PublicKey
}

func newTokenKeys() (*tokenKeys, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("session: signing key: %w", err)
	}
	kid, err := randomID()
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("session: signer: %w", err)
	}
	return &tokenKeys{kid: kid, signer: signer, public: &key.PublicKey}, nil
}

func (k *tokenKeys) mint(c *claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("session: encode claims: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("session: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("session: serialize: %w", err)
	}
	return tok, nil
}

// verify checks that token is a JWS signed by this process's key with the
// issuer's claims, and returns its claims. It is the slow path, used only when
// the token's hash is not found among live sessions (to tell a genuine but
// ended session from a forgery) and for introspection of unknown tokens.
func (k *tokenKeys) verify(token string, issuer string) (*claims, error) {
	if len(token) > MaxTokenBytes || strings.Count(token, ".") != 2 {
		return nil, reject(api.CodeInvalidToken, ReasonMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, reject(api.CodeInvalidToken, ReasonMalformed)
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Protected.KeyID != k.kid {
		return nil, reject(api.CodeInvalidToken, ReasonSignature)
	}
	payload, err := jws.Verify(k.public)
	if err != nil {
		return nil, reject(api.CodeInvalidToken, ReasonSignature)
	}
	var c claims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	if err := dec.Decode(&c); err != nil {
		return nil, reject(api.CodeInvalidToken, ReasonClaims)
	}
	if c.Issuer != issuer || c.Audience != issuer || c.ID == "" || c.Expiry == 0 || c.CNF.X5TS256 == "" {
		return nil, reject(api.CodeInvalidToken, ReasonClaims)
	}
	if _, err := spiffeid.FromString(c.Subject); err != nil {
		return nil, reject(api.CodeInvalidToken, ReasonClaims)
	}
	return &c, nil
}

// hashToken is the only token-derived value kept.
//
// It hashes the string's bytes in place. hashToken runs on every request, and
// []byte(token) would copy the ~500-byte token to the heap each time (the
// compiler cannot prove that Sum256 does not write to its argument; it only
// reads it), which was Validate's one allocation.
func hashToken(token string) TokenHash {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))) //nolint:gosec // G103: a read-only view of the string's bytes, only read by Sum256 (see above)
}

// idEncoding has no '-' at all, so an ID never looks like a CLI flag.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID returns 128 bits from crypto/rand as 26 lowercase base32 characters.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: random: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
}
