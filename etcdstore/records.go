package etcdstore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/session"
)

// Layout of the keys under the prefix P. Nothing here is a credential: a
// token appears only as its SHA-256, a certificate only as its fingerprint.
//
//	P sessions/<id>          a session record, signed by the replica that wrote it
//	P used/<id>              the session's last use (Unix ns), shared lazily
//	P tombstones/<hex hash>  an ended or replaced token: owner, session, reason, until
//	P keys/<kid>             a replica's public key, signed with its X.509 SVID
//	P replicas/<rid>         a live replica (under a short lease) and the last
//	                         revision it has applied (its acknowledgement)
//	P count, P count/<id>    live sessions in all and per SPIFFE ID (the caps)
type layout struct{ p string }

func (l layout) session(id string) string { return l.p + "sessions/" + id }
func (l layout) used(id string) string    { return l.p + "used/" + id }
func (l layout) tomb(h session.TokenHash) string {
	return l.p + "tombstones/" + hex.EncodeToString(h[:])
}
func (l layout) key(kid string) string             { return l.p + "keys/" + kid }
func (l layout) replica(rid string) string         { return l.p + "replicas/" + rid }
func (l layout) total() string                     { return l.p + "count" }
func (l layout) perIdentity(id spiffeid.ID) string { return l.p + "count/" + id.String() }

// Kinds of signed payloads: each names what it is, so that one signed for
// one kind of key is never taken for another (a record for a tombstone).
const (
	kindSession   = "session"
	kindTombstone = "tombstone"
)

// recordPayload is a session record as signed.
type recordPayload struct {
	Kind      string         `json:"kind"`
	Issuer    string         `json:"iss"`
	ID        string         `json:"id"`
	Owner     string         `json:"sub"`
	CreatedAt int64          `json:"created"`
	ExpiresAt int64          `json:"exp"`
	Token     []byte         `json:"tok"` // SHA-256 of the token
	FP        string         `json:"fp"`
	NotBefore int64          `json:"nbf,omitempty"`
	Roles     []string       `json:"roles,omitempty"`
	Needed    int            `json:"needed,omitempty"`
	Approvals []approvalJSON `json:"approvals,omitempty"`
}

type approvalJSON struct {
	ID string `json:"id"`
	At int64  `json:"at"`
}

// signed is the envelope of a record or an announcement: the payload's
// exact bytes and a signature over them.
type signed struct {
	Payload []byte   `json:"p"`
	KID     string   `json:"kid,omitempty"` // records: the signing key
	X5C     [][]byte `json:"x5c,omitempty"` // announcements: the SVID chain
	Sig     []byte   `json:"sig"`
}

func encodeRecord(k *session.Key, iss string, r session.Record) (string, error) {
	p := recordPayload{
		Kind: kindSession, Issuer: iss, ID: r.ID, Owner: r.Owner.String(), CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		Token: r.Binding.Token[:], FP: r.Binding.Fingerprint, Roles: r.Roles, Needed: r.Needed,
	}
	if !r.Binding.NotBefore.IsZero() {
		p.NotBefore = r.Binding.NotBefore.UnixNano()
	}
	for _, a := range r.Approvals {
		p.Approvals = append(p.Approvals, approvalJSON{ID: a.SPIFFEID.String(), At: a.At.UnixNano()})
	}
	return seal(k, p)
}

// seal is v's JSON in an envelope signed with the replica's key k.
func seal(k *session.Key, v any) (string, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sig, err := k.SignRecord(payload)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(signed{Payload: payload, KID: k.KID(), Sig: sig})
	return string(b), err
}

// unseal checks an envelope of seal against the replicas' keys and decodes
// its payload into v; without verify (only to read what may be deleted) it
// checks no signature.
func unseal(raw []byte, verify bool, keys map[string]ed25519.PublicKey, v any) error {
	var env signed
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("not a signed envelope: %w", errForged)
	}
	if verify && !session.VerifyRecord(keys[env.KID], env.Payload, env.Sig) {
		return fmt.Errorf("signed by unknown key %q or bad signature: %w", env.KID, errForged)
	}
	if err := json.Unmarshal(env.Payload, v); err != nil {
		return fmt.Errorf("payload: %w", errForged)
	}
	return nil
}

// errForged is a record or announcement that does not verify.
var errForged = errors.New("does not verify")

// decodeRecord checks a stored record: its signature by a known replica
// key, its issuer, and that it lies under its own ID.
func decodeRecord(raw []byte, id, iss string, keys map[string]ed25519.PublicKey) (session.Record, error) {
	var p recordPayload
	if err := unseal(raw, true, keys, &p); err != nil {
		return session.Record{}, err
	}
	if p.Kind != kindSession || p.ID != id || p.Issuer != iss || len(p.Token) != len(session.TokenHash{}) {
		return session.Record{}, fmt.Errorf("record of %q under %q for issuer %q: %w", p.ID, id, p.Issuer, errForged)
	}
	owner, err := spiffeid.FromString(p.Owner)
	if err != nil {
		return session.Record{}, fmt.Errorf("owner: %w", errForged)
	}
	r := session.Record{
		ID: p.ID, Owner: owner, CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt, LastUsed: p.CreatedAt,
		Binding: session.Binding{Fingerprint: p.FP}, Roles: p.Roles, Needed: p.Needed,
	}
	copy(r.Binding.Token[:], p.Token)
	if p.NotBefore != 0 {
		r.Binding.NotBefore = time.Unix(0, p.NotBefore).UTC()
	}
	for _, a := range p.Approvals {
		aid, err := spiffeid.FromString(a.ID)
		if err != nil {
			return session.Record{}, fmt.Errorf("approver: %w", errForged)
		}
		r.Approvals = append(r.Approvals, session.Approval{SPIFFEID: aid, At: time.Unix(0, a.At).UTC()})
	}
	return r, nil
}

// announcement is a replica's public key as signed with its SVID.
type announcement struct {
	Issuer  string `json:"iss"`
	KID     string `json:"kid"`
	Replica string `json:"replica"`
	Key     []byte `json:"ed25519"` // the 32 bytes of the public key (RFC 8032)
	At      int64  `json:"at"`      // Unix ns; the SVID was valid then
}

// announceDomain separates announcement signatures from anything else the
// SVID's key signs.
const announceDomain = "tether-key-announcement-v1\x00"

func announceDigest(payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(announceDomain))
	h.Write(payload)
	return h.Sum(nil)
}

func encodeAnnouncement(k *session.Key, iss, rid string, s *x509svid.SVID, now time.Time) (string, error) {
	payload, err := json.Marshal(announcement{Issuer: iss, KID: k.KID(), Replica: rid, Key: k.Public(), At: now.UnixNano()})
	if err != nil {
		return "", err
	}
	sig, err := s.PrivateKey.Sign(rand.Reader, announceDigest(payload), crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("sign the key announcement with the SVID: %w", err)
	}
	env := signed{Payload: payload, Sig: sig}
	for _, c := range s.Certificates {
		env.X5C = append(env.X5C, c.Raw)
	}
	b, err := json.Marshal(env)
	return string(b), err
}

// decodeAnnouncement checks a key announcement: its chain is an X.509 SVID
// of issuer, valid when it signed and chaining to bundles, and its
// signature covers the key. It returns the announced key ID and key.
func decodeAnnouncement(raw []byte, kid string, issuer spiffeid.ID, bundles x509bundle.Source) (ed25519.PublicKey, error) {
	var env signed
	if err := json.Unmarshal(raw, &env); err != nil || len(env.X5C) == 0 {
		return nil, fmt.Errorf("not a signed announcement: %w", errForged)
	}
	var a announcement
	if err := json.Unmarshal(env.Payload, &a); err != nil {
		return nil, fmt.Errorf("payload: %w", errForged)
	}
	if a.KID != kid || a.Issuer != issuer.String() {
		return nil, fmt.Errorf("announcement of %q under %q for issuer %q: %w", a.KID, kid, a.Issuer, errForged)
	}
	certs := make([]*x509.Certificate, 0, len(env.X5C))
	for _, der := range env.X5C {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", errForged)
		}
		certs = append(certs, c)
	}
	id, _, err := x509svid.Verify(certs, bundles, x509svid.WithTime(time.Unix(0, a.At)))
	if err != nil {
		return nil, fmt.Errorf("SVID: %w: %w", err, errForged)
	}
	if id != issuer {
		return nil, fmt.Errorf("signed by %s, not %s: %w", id, issuer, errForged)
	}
	if !verifySVIDSignature(certs[0].PublicKey, announceDigest(env.Payload), env.Sig) {
		return nil, fmt.Errorf("bad signature: %w", errForged)
	}
	if len(a.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key: %w", errForged)
	}
	return ed25519.PublicKey(a.Key), nil
}

// verifySVIDSignature checks what crypto.Signer.Sign made over digest
// (SHA-256) with an SVID's key: ECDSA (ASN.1), RSA (PKCS #1 v1.5) or Ed25519.
func verifySVIDSignature(pub any, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest, sig)
	}
	return false
}

// tombstoneJSON is a tombstone as signed; its token hash is in its key
// and in the payload.
type tombstoneJSON struct {
	Kind   string `json:"kind"`
	Issuer string `json:"iss"`
	Token  []byte `json:"tok"`
	Owner  string `json:"sub"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
	Until  int64  `json:"until"`
}

// encodeTombstone signs a tombstone like a record: a writer to etcd cannot
// add tombstones (which would push a genuine one out of the caps).
func encodeTombstone(k *session.Key, iss string, t session.Tombstone) (string, error) {
	return seal(k, tombstoneJSON{Kind: kindTombstone, Issuer: iss, Token: t.Token[:], Owner: t.Owner.String(), ID: t.ID, Reason: t.Reason, Until: t.Until})
}

// decodeTombstone checks a stored tombstone; keys nil skips the signature
// (the janitor only reads when it ends).
func decodeTombstone(hexHash string, raw []byte, iss string, keys map[string]ed25519.PublicKey) (session.Tombstone, error) {
	var tj tombstoneJSON
	if err := unseal(raw, keys != nil, keys, &tj); err != nil {
		return session.Tombstone{}, err
	}
	owner, err := spiffeid.FromString(tj.Owner)
	if err != nil || tj.Kind != kindTombstone || tj.Issuer != iss || hex.EncodeToString(tj.Token) != hexHash || len(tj.Token) != len(session.TokenHash{}) {
		return session.Tombstone{}, fmt.Errorf("tombstone of another issuer, owner or key: %w", errForged)
	}
	t := session.Tombstone{Owner: owner, ID: tj.ID, Reason: tj.Reason, Until: tj.Until}
	copy(t.Token[:], tj.Token)
	return t, nil
}

func parseInt(b []byte) int64 {
	n, _ := strconv.ParseInt(string(b), 10, 64) // a malformed value counts as 0
	return n
}
