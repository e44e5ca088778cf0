package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/devpki"
)

// The run's throwaway trust domain and identities.
var (
	trustDomain = spiffeid.RequireTrustDomainFromString("bench.test")
	tetherdID   = spiffeid.RequireFromPath(trustDomain, "/tetherd")
	baselineID  = spiffeid.RequireFromPath(trustDomain, "/baseline")
	jwtPeerID   = spiffeid.RequireFromPath(trustDomain, "/jwtpeer")
	adminID     = spiffeid.RequireFromPath(trustDomain, "/admin/load")
)

// pki is the run's trust: a CA, its bundle file, the SVID files of each
// server, the load client's SVID, and a JWT authority whose bundle the
// JWT-SVID peer trusts.
type pki struct {
	dir    string
	bundle string // PEM of the CA
	admin  *x509svid.SVID
	jwks   string // the JWT bundle, as JWKS
	jwtKey crypto.Signer
	jwtKID string
}

const svidTTL = time.Hour

func newPKI(dir string) (*pki, error) {
	ca, err := devpki.NewCA(trustDomain, svidTTL)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, bundle: filepath.Join(dir, "bundle.pem"), jwks: filepath.Join(dir, "jwt-bundle.json"), jwtKID: "bench"}
	if err := ca.WriteBundle(p.bundle); err != nil {
		return nil, err
	}
	for _, id := range []spiffeid.ID{tetherdID, baselineID, jwtPeerID} {
		s, err := ca.Issue(id, svidTTL)
		if err != nil {
			return nil, err
		}
		cert, key := p.svidFiles(id)
		if err := devpki.WriteSVID(s, cert, key); err != nil {
			return nil, err
		}
	}
	if p.admin, err = ca.Issue(adminID, svidTTL); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("jwt authority: %w", err)
	}
	p.jwtKey = key
	jwks, err := jwtbundle.FromJWTAuthorities(trustDomain, map[string]crypto.PublicKey{p.jwtKID: key.Public()}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("jwt bundle: %w", err)
	}
	if err := os.WriteFile(p.jwks, jwks, 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// svidFiles are the certificate and key files of a server's SVID.
func (p *pki) svidFiles(id spiffeid.ID) (cert, key string) {
	base := filepath.Join(p.dir, filepath.Base(id.Path()))
	return base + ".pem", base + ".key"
}

// jwtSVID mints the load client's JWT-SVID for the JWT-SVID peer, as a SPIRE
// agent would: ES256, with the authority's key ID, sub the client's SPIFFE
// ID, aud the peer's.
func (p *pki) jwtSVID() (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.jwtKey, KeyID: p.jwtKID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  adminID.String(),
		Audience: jwt.Audience{jwtPeerID.String()},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(svidTTL)),
	}).Serialize()
}
