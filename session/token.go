package session

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"unsafe"

	"github.com/tetherproject/tether/pkg/api"
)

// MaxTokenBytes is the longest token looked at. Ours are about 450 bytes;
// anything far longer is refused before it is hashed.
const MaxTokenBytes = 4096

// claims is the token's payload. The Manager only ever writes it: tokens are
// recognised by their hash, never by decoding their claims.
type claims struct {
	Issuer   string  `json:"iss"`
	Audience string  `json:"aud"`
	Subject  string  `json:"sub"`
	ID       string  `json:"jti"`
	IssuedAt int64   `json:"iat"`
	Expiry   int64   `json:"exp"`
	CNF      api.CNF `json:"cnf"`
	// AuthTime is when the owner logged in (RFC 9470 auth_time; a rebind
	// keeps it). It is not written into the token: every request sends the
	// token, and nothing reads the claim (tokens are recognised by their
	// hash); the session object's authenticated_at carries it.
	AuthTime int64 `json:"-"`
	// Roles, an optional claim: the roles the session holds.
	Roles []string `json:"roles,omitempty"`
}

// Key is the signing key of one Manager (one tetherd process, one replica):
// made at start, never written anywhere. Nothing here verifies the tokens
// it signs: a token is accepted only if its hash is that of a token minted
// for a live session. A store shared by replicas signs its records with it
// (SignRecord) and announces its public half (Public), so that a record
// written by anyone but a replica is refused.
type Key struct {
	key   *ecdsa.PrivateKey
	head  string // base64url of the JWS protected header, the same for every token
	kidIn []byte // `"kid":"<our key ID>"`, as it stands in our tokens' header
	kid   string
}

// KID is the key's ID, the kid of its tokens' JWS header.
func (k *Key) KID() string { return k.kid }

// Public is the key's public half.
func (k *Key) Public() *ecdsa.PublicKey { return &k.key.PublicKey }

// recordDomain separates record signatures from token signatures: a JWS
// signing input never starts with it.
const recordDomain = "tether-record-v1\x00"

// SignRecord signs payload (a stored record, not a token) with ES256 over
// SHA-256 of a domain prefix and payload: 64 bytes, R then S.
func (k *Key) SignRecord(payload []byte) ([]byte, error) {
	d := recordDigest(payload)
	r, s, err := ecdsa.Sign(rand.Reader, k.key, d[:])
	if err != nil {
		return nil, fmt.Errorf("session: sign record: %w", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

// VerifyRecord reports whether sig is SignRecord's signature of payload by
// the key whose public half is pub.
func VerifyRecord(pub *ecdsa.PublicKey, payload, sig []byte) bool {
	if pub == nil || len(sig) != 64 {
		return false
	}
	d := recordDigest(payload)
	return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

func recordDigest(payload []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(recordDomain))
	h.Write(payload)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// otherKey reports whether token's JWS header names a key ID that is not
// ours: a token of a previous tetherd instance (its key died with it) or of
// another issuer. It decodes only the short header, on the stack, and
// checks nothing else: it only picks the reason of a refusal.
func (k *Key) otherKey(token string) bool {
	head, _, ok := strings.Cut(token, ".")
	var buf [256]byte
	if !ok || base64.RawURLEncoding.DecodedLen(len(head)) > len(buf) {
		return false
	}
	// Decode reads head without writing it; no copy of it is made.
	n, err := base64.RawURLEncoding.Decode(buf[:], unsafe.Slice(unsafe.StringData(head), len(head))) //nolint:gosec // G103: a read-only view of the string's bytes, only read by Decode
	if err != nil {
		return false
	}
	h := buf[:n]
	return bytes.Contains(h, []byte(`"kid":"`)) && !bytes.Contains(h, k.kidIn)
}

// NewKey makes a new P-256 signing key with a random key ID.
func NewKey() (*Key, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("session: signing key: %w", err)
	}
	kid, err := randomKID()
	if err != nil {
		return nil, err
	}
	// The header, made once instead of at every login: alg and kid only (no
	// "typ", which RFC 7515 makes optional and nothing here reads: every
	// byte of the token travels with every request). kid is base32, nothing
	// to escape.
	head := `{"alg":"ES256","kid":"` + kid + `"}`
	return &Key{key: key, head: base64.RawURLEncoding.EncodeToString([]byte(head)), kidIn: []byte(`"kid":"` + kid + `"`), kid: kid}, nil
}

// mint signs c as a compact JWS (RFC 7515) with ES256 (RFC 7518 §3.4: the
// signature is R and S, 32 bytes each, over the SHA-256 of the signing
// input). It is what go-jose's signer made, without its reflection over the
// header at every login; the tests verify its tokens with go-jose.
func (k *Key) mint(c *claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("session: encode claims: %w", err)
	}
	return k.sign(payload)
}

// sign makes the compact JWS of payload with our header and key.
func (k *Key) sign(payload []byte) (string, error) {
	b64 := base64.RawURLEncoding
	n := len(k.head) + 1 + b64.EncodedLen(len(payload))
	tok := make([]byte, n, n+1+b64.EncodedLen(64))
	copy(tok, k.head)
	tok[len(k.head)] = '.'
	b64.Encode(tok[len(k.head)+1:], payload)
	digest := sha256.Sum256(tok)
	r, s, err := ecdsa.Sign(rand.Reader, k.key, digest[:])
	if err != nil {
		return "", fmt.Errorf("session: sign: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	tok = append(tok, '.')
	tok = b64.AppendEncode(tok, sig[:])
	return string(tok), nil
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

// randomKID returns a key ID: 80 bits from crypto/rand as 16 lowercase
// base32 characters. A key ID only tells keys apart (a replica's from
// another's, this process's from a previous one's): 80 random bits do, and
// every request carries it, where a session ID needs 128.
func randomKID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: random: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
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
