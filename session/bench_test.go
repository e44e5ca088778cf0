package session

// Benchmarks of issue 5. bench/run runs them and writes BENCHMARKS.md; keep
// the names, outside tooling looks for them. Every benchmark also works with
// -benchtime=1x (.ci/run), the 1M-session ones in a few seconds.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"golang.org/x/time/rate"
)

var (
	benchIssuer = spiffeid.RequireFromString("spiffe://example.org/tetherd")
	benchAdmin  = spiffeid.RequireFromString("spiffe://example.org/admin/alice")
)

// benchFingerprint is a realistic x5t#S256: 43 base64url characters.
func benchFingerprint(tb testing.TB) string {
	tb.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func benchManager(tb testing.TB, cfg Config) *Manager {
	tb.Helper()
	cfg.Issuer = benchIssuer
	if cfg.LoginRate == 0 {
		cfg.LoginRate = rate.Inf
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Hour // the benchmarks sweep by themselves
	}
	m, err := NewManager(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// benchLogin opens n sessions, each for its own leaf of peer's identity.
func benchLogin(tb testing.TB, m *Manager, id spiffeid.ID, n int) ([]string, []Peer) {
	tb.Helper()
	toks, peers := make([]string, n), make([]Peer, n)
	for i := range n {
		peers[i] = Peer{ID: id, Fingerprint: benchFingerprint(tb)}
		tok, _, err := m.Login(context.Background(), peers[i])
		if err != nil {
			tb.Fatal(err)
		}
		toks[i] = tok
	}
	return toks, peers
}

// BenchmarkValidate is the check behind every request: hash the token, find
// the session, compare identity and leaf fingerprint, restart the idle clock.
func BenchmarkValidate(b *testing.B) {
	m := benchManager(b, Config{})
	toks, peers := benchLogin(b, m, benchAdmin, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Validate(ctx, toks[0], peers[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateParallel validates from every P at once, each goroutine
// its own session (as concurrent admins would); run with -cpu 1,2.
func BenchmarkValidateParallel(b *testing.B) {
	const sessions = 64
	m := benchManager(b, Config{MaxSessionsPerIdentity: sessions})
	toks, peers := benchLogin(b, m, benchAdmin, sessions)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % sessions
		for pb.Next() {
			if _, err := m.Validate(ctx, toks[i], peers[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJWTSVIDValidate is the SPIFFE-native alternative to a session: a
// JWT-SVID signed with ES256 by a trust domain's JWT authority, validated
// with go-spiffe against the trust domain's JWT bundle.
func BenchmarkJWTSVIDValidate(b *testing.B) {
	td := benchAdmin.TrustDomain()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	const kid = "authority-1"
	bundle := jwtbundle.New(td)
	if err := bundle.AddJWTAuthority(kid, key.Public()); err != nil {
		b.Fatal(err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  benchAdmin.String(),
		Audience: jwt.Audience{benchIssuer.String()},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	aud := []string{benchIssuer.String()}
	b.ReportAllocs()
	for b.Loop() {
		s, err := jwtsvid.ParseAndValidate(token, bundle, aud)
		if err != nil {
			b.Fatal(err)
		}
		if s.ID != benchAdmin {
			b.Fatalf("subject %s", s.ID)
		}
	}
}
