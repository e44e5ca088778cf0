package svid

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
)

// Fingerprint is the RFC 8705 §3.1 certificate thumbprint (`x5t#S256`): the
// base64url encoding, without padding, of the SHA-256 digest of the DER
// encoding of cert.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
