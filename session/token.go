package session

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/tetherproject/tether/internal/wirejson"
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
	// RebindNonce, an optional claim of the tokens a rebind mints: 64 random
	// bits. Ed25519 signatures are deterministic, so two mints of the same
	// claims would make the same token; a login's claims never repeat (a new
	// jti), but a rebind's could (same jti, the second of iat, a leaf the
	// session was bound to before, which a leaf without a NotBefore allows),
	// and the token a rebind killed would live again. The nonce makes every
	// rebound token new.
	RebindNonce string `json:"rebind_nonce,omitempty"`
}

// Key is the signing key of one Manager (one tetherd process, one replica):
// made at start, never written anywhere. Nothing here verifies the tokens
// it signs: a token is accepted only if its hash is that of a token minted
// for a live session. A store shared by replicas signs its records with it
// (SignRecord) and announces its public half (Public), so that a record
// written by anyone but a replica is refused.
type Key struct {
	key   ed25519.PrivateKey
	pub   ed25519.PublicKey
	head  string // base64url of the JWS protected header, the same for every token
	kidIn []byte // `"kid":"<our key ID>"`, as it stands in our tokens' header
	kid   string
}

// KID is the key's ID, the kid of its tokens' JWS header.
func (k *Key) KID() string { return k.kid }

// Public is the key's public half (32 bytes, RFC 8032).
func (k *Key) Public() ed25519.PublicKey { return k.pub }

// recordOptions sign records with Ed25519ctx (RFC 8032 §5.1): its context
// separates a record's signature from a token's (pure Ed25519), so neither
// can be passed off as the other.
var recordOptions = &ed25519.Options{Context: "tether-record-v1"}

// SignRecord signs payload (a stored record, not a token) with Ed25519ctx:
// 64 bytes.
func (k *Key) SignRecord(payload []byte) ([]byte, error) {
	sig, err := k.key.Sign(nil, payload, recordOptions)
	if err != nil {
		return nil, fmt.Errorf("session: sign record: %w", err)
	}
	return sig, nil
}

// VerifyRecord reports whether sig is SignRecord's signature of payload by
// the key whose public half is pub.
func VerifyRecord(pub ed25519.PublicKey, payload, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.VerifyWithOptions(pub, payload, sig, recordOptions) == nil
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

// NewKey makes a new Ed25519 signing key with a random key ID.
func NewKey() (*Key, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
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
	head := `{"alg":"EdDSA","kid":"` + kid + `"}`
	return &Key{key: key, pub: pub, head: base64.RawURLEncoding.EncodeToString([]byte(head)), kidIn: []byte(`"kid":"` + kid + `"`), kid: kid}, nil
}

// appendClaims appends json.Marshal(c) to b, byte for byte (the tests
// compare them on random claims), without encoding/json's reflection: a
// login runs it once, with cold caches, beside a TLS handshake.
func appendClaims(b []byte, c *claims) []byte {
	b = append(b, `{"iss":`...)
	b = wirejson.AppendString(b, c.Issuer)
	b = append(b, `,"aud":`...)
	b = wirejson.AppendString(b, c.Audience)
	b = append(b, `,"sub":`...)
	b = wirejson.AppendString(b, c.Subject)
	b = append(b, `,"jti":`...)
	b = wirejson.AppendString(b, c.ID)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Expiry, 10)
	b = append(b, `,"cnf":{"x5t#S256":`...)
	b = wirejson.AppendString(b, c.CNF.X5TS256)
	b = append(b, '}')
	if len(c.Roles) > 0 {
		b = append(b, `,"roles":[`...)
		for i, r := range c.Roles {
			if i > 0 {
				b = append(b, ',')
			}
			b = wirejson.AppendString(b, r)
		}
		b = append(b, ']')
	}
	if c.RebindNonce != "" {
		b = append(b, `,"rebind_nonce":`...)
		b = wirejson.AppendString(b, c.RebindNonce)
	}
	return append(b, '}')
}

// mint signs c as a compact JWS (RFC 7515) with EdDSA (RFC 8037: Ed25519,
// RFC 8032, over the signing input itself; 64 bytes). It is what go-jose's
// signer makes, without its reflection over the header at every login; the
// tests verify its tokens with go-jose.
//
// Ed25519 rather than ES256 (both allowed by the contract): on the machine
// of BENCHMARKS.md it signs a token in about 19 µs with no allocation, where
// ES256 took about 29 µs and 63 allocations (6 KB) of garbage per login;
// its signatures need no randomness; and a replica verifies a record faster.
func (k *Key) mint(c *claims) (string, error) {
	var buf [512]byte // the claims of a token are about 330 bytes
	return k.sign(appendClaims(buf[:0], c))
}

// sign makes the compact JWS of payload with our header and key.
func (k *Key) sign(payload []byte) (string, error) {
	b64 := base64.RawURLEncoding
	n := len(k.head) + 1 + b64.EncodedLen(len(payload))
	tok := make([]byte, n, n+1+b64.EncodedLen(64))
	copy(tok, k.head)
	tok[len(k.head)] = '.'
	b64.Encode(tok[len(k.head)+1:], payload)
	sig := ed25519.Sign(k.key, tok)
	tok = append(tok, '.')
	tok = b64.AppendEncode(tok, sig)
	return string(tok), nil
}

// InJWSAlphabet reports whether s uses only the characters of a compact JWS
// (RFC 7515: base64url and dots): one table lookup a byte and no branch but
// the loop's, four bytes at a time in independent lanes. A refused token is
// read to its end, which is no more work than accepting a valid token of the
// same length.
func InJWSAlphabet(s string) bool {
	a, b, c, d := byte(1), byte(1), byte(1), byte(1)
	for ; len(s) >= 4; s = s[4:] {
		a &= jwsChar[s[0]]
		b &= jwsChar[s[1]]
		c &= jwsChar[s[2]]
		d &= jwsChar[s[3]]
	}
	for i := 0; i < len(s); i++ {
		a &= jwsChar[s[i]]
	}
	return a&b&c&d == 1
}

// jwsChar is 1 for the bytes of a compact JWS, 0 for any other.
var jwsChar = func() (t [256]byte) {
	for c := range 256 {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			t[c] = 1
		}
	}
	return t
}()

// hashToken is the only token-derived value kept.
//
// It hashes the string's bytes in place. hashToken runs on every request, and
// []byte(token) would copy the ~500-byte token to the heap each time (the
// compiler cannot prove that Sum256 does not write to its argument; it only
// reads it), which was Validate's one allocation.
func hashToken(token string) TokenHash {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))) //nolint:gosec // G103: a read-only view of the string's bytes, only read by Sum256 (see above)
}

// TokenMemo remembers the last token a check through it accepted, and that
// token's hash, so that the same token presented again is not hashed again:
// an HTTP client sends one token over a kept-alive connection at every
// request, and its SHA-256 (about 500 bytes, eight blocks) is most of a
// check's cost. A token is recognised by comparing it with the remembered
// one in constant time, word by word (a fifth of a hash's cost); any other
// token is hashed. With the in-process store, the memo also remembers the
// stored entry the token opened, which is used again as long as no change
// replaced or removed it (a lookup in the store's index otherwise). The
// memo decides nothing: it only saves computing a hash, or a lookup, whose
// result it knows; a session ended since is refused as before (an ended
// session's entry is marked gone before its end is answered).
//
// auth.ConnContext keeps one per connection, which holds the connection's
// last accepted token for as long as the connection lives (the request that
// carried it holds it too, while it is served). The zero value is ready;
// it is safe for concurrent use.
type TokenMemo struct {
	last atomic.Pointer[memoEntry]
}

type memoEntry struct {
	token string
	hash  TokenHash
	// e is the entry of store that the token opened, if store is an
	// in-process one.
	e     *entry
	store *MemoryStore
}

// hash is hashToken(token), computed or remembered, and the entry of s that
// token opened if it is remembered, still s's, and not gone; else nil.
func (t *TokenMemo) hash(token string, s *MemoryStore) (TokenHash, *entry) {
	if t != nil {
		if me := t.last.Load(); me != nil && sameToken(me.token, token) {
			if s == nil || me.store != s || me.e == nil || me.e.gone.Load() {
				return me.hash, nil
			}
			return me.hash, me.e
		}
	}
	return hashToken(token), nil
}

// Remembers reports whether token is the one t remembers, comparing in
// constant time.
func (t *TokenMemo) Remembers(token string) bool {
	e := t.last.Load()
	return e != nil && sameToken(e.token, token)
}

// remember keeps token, accepted with hash h as the entry e of s (nil, nil
// with another store), unless it is what is kept.
func (t *TokenMemo) remember(token string, h TokenHash, e *entry, s *MemoryStore) {
	if t == nil {
		return
	}
	if me := t.last.Load(); me != nil && me.hash == h && me.e == e && me.store == s {
		return
	}
	t.last.Store(&memoEntry{token: token, hash: h, e: e, store: s})
}

// sameToken reports whether a and b are equal, in a time that depends on
// their lengths only (a length is not secret: every token of a session has
// about the same): eight bytes at a time, no branch on their contents.
func sameToken(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v uint64
	for ; len(a) >= 8; a, b = a[8:], b[8:] {
		v |= word(a) ^ word(b)
	}
	for i := range len(a) {
		v |= uint64(a[i] ^ b[i])
	}
	return v == 0
}

// word is the first eight bytes of s, little-endian (one load).
func word(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
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

// randomNonce returns 64 bits from crypto/rand as 11 base64url characters.
func randomNonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// randomID returns 128 bits from crypto/rand as 26 lowercase base32 characters.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: random: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
}
