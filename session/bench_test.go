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
	"fmt"
	"math"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/stretchr/testify/require"
)

var (
	benchIssuer = spiffeid.RequireFromString("spiffe://example.org/tetherd")
	benchAdmin  = spiffeid.RequireFromString("spiffe://example.org/admin/alice")
)

// benchFingerprint is a realistic x5t#S256: 43 base64url characters.
func benchFingerprint(tb testing.TB) string {
	tb.Helper()
	var b [32]byte
	_, err := rand.Read(b[:])
	require.NoError(tb, err)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// benchSessions is the package's test Manager on the real clock, as a
// deployment runs it (the manual clock takes a lock on every reading),
// changed by mod if set, with n sessions of benchAdmin, each for its own
// leaf.
func benchSessions(b *testing.B, n int, mod func(*Config)) (*Manager, []string, []Peer) {
	b.Helper()
	m, _ := NewTestManager(b, func(c *Config) {
		c.Now = time.Now
		if mod != nil {
			mod(c)
		}
	})
	toks, peers := benchLogin(b, m, benchAdmin, n)
	return m, toks, peers
}

// benchLogin opens n sessions, each for its own leaf of peer's identity.
func benchLogin(tb testing.TB, m *Manager, id spiffeid.ID, n int) ([]string, []Peer) {
	tb.Helper()
	toks, peers := make([]string, n), make([]Peer, n)
	for i := range n {
		peers[i] = Peer{ID: id, Fingerprint: benchFingerprint(tb)}
		tok, _, err := m.Login(context.Background(), peers[i])
		require.NoError(tb, err)
		toks[i] = tok
	}
	return toks, peers
}

// BenchmarkValidate is the check behind every request: hash the token, find
// the session, compare identity and leaf fingerprint, restart the idle clock.
func BenchmarkValidate(b *testing.B) {
	m, toks, peers := benchSessions(b, 1, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Validate(ctx, toks[0], peers[0]); err != nil { // timed: no testify in the loop
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckCommit is the same check split as the HTTP layer does it:
// Check before the handler, Commit once it answered 2xx.
func BenchmarkCheckCommit(b *testing.B) {
	m, toks, peers := benchSessions(b, 1, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		u, err := m.Check(ctx, toks[0], peers[0])
		if err != nil { // timed: no testify in the loop
			b.Fatal(err)
		}
		u.Commit()
	}
}

// BenchmarkValidateRefused times the refusals a token holder can provoke:
// a stranger presenting a stolen live or ended token, the owner presenting
// an ended one, and a token never minted. They should cost alike (finding
// 9): none checks a signature.
func BenchmarkValidateRefused(b *testing.B) {
	m, toks, peers := benchSessions(b, 2, nil)
	ctx := context.Background()
	ended, err := m.Validate(ctx, toks[1], peers[1])
	require.NoError(b, err)
	require.NoError(b, m.Logout(ctx, ended.ID))
	mallory := Peer{ID: spiffeid.RequireFromString("spiffe://example.org/admin/mallory"), Fingerprint: benchFingerprint(b)}
	for _, c := range []struct {
		name  string
		token string
		peer  Peer
	}{
		{"stranger-live", toks[0], mallory},
		{"stranger-ended", toks[1], mallory},
		{"owner-ended", toks[1], peers[1]},
		{"unknown", toks[0][:len(toks[0])-8] + "AAAAAAAA", peers[0]},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Validate(ctx, c.token, c.peer); err == nil { // timed: no testify in the loop
					b.Fatal("accepted")
				}
			}
		})
	}
}

// BenchmarkValidateParallel validates from every P at once, each goroutine
// its own session (as concurrent admins would); run with -cpu 1,2.
func BenchmarkValidateParallel(b *testing.B) {
	const sessions = 64
	m, toks, peers := benchSessions(b, sessions, func(c *Config) { c.MaxSessionsPerIdentity = sessions })
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % sessions
		for pb.Next() {
			if _, err := m.Validate(ctx, toks[i], peers[i]); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
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
	require.NoError(b, err)
	const kid = "authority-1"
	bundle := jwtbundle.New(td)
	require.NoError(b, bundle.AddJWTAuthority(kid, key.Public()))
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	require.NoError(b, err)
	now := time.Now()
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  benchAdmin.String(),
		Audience: jwt.Audience{benchIssuer.String()},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	require.NoError(b, err)
	aud := []string{benchIssuer.String()}
	b.ReportAllocs()
	for b.Loop() {
		s, err := jwtsvid.ParseAndValidate(token, bundle, aud)
		if err != nil { // timed: no testify in the loop
			b.Fatal(err)
		}
		if s.ID != benchAdmin {
			b.Fatalf("subject %s", s.ID)
		}
	}
}

// benchFill inserts n sessions into s, made as Login makes them: a session
// ID, a token hash, a fingerprint string of its own, and an owner with 16
// sessions (the default per-identity cap) of a distinct identity. It
// bypasses Login, which would spend most of a minute on a million
// signatures; what Login adds to the store is exactly this.
func benchFill(tb testing.TB, s Store, n int, created, expires int64) {
	tb.Helper()
	rng := mrand.NewChaCha8([32]byte{1})
	var owner spiffeid.ID
	for i := range n {
		if i%DefaultMaxSessionsPerIdentity == 0 {
			var err error
			owner, err = spiffeid.FromSegments(benchAdmin.TrustDomain(), "admin", fmt.Sprintf("user-%07d", i/DefaultMaxSessionsPerIdentity))
			if err != nil { // a million times: no testify in the loop
				tb.Fatal(err)
			}
		}
		var raw [16]byte
		var h TokenHash
		var fp [32]byte
		_, _ = rng.Read(raw[:])
		_, _ = rng.Read(h[:])
		_, _ = rng.Read(fp[:])
		r := Record{ID: idEncoding.EncodeToString(raw[:]), Owner: owner, CreatedAt: created, ExpiresAt: expires, LastUsed: created,
			Binding: Binding{Token: h, Fingerprint: base64.RawURLEncoding.EncodeToString(fp[:])}}
		if err := s.Insert(context.Background(), r, Limits{}); err != nil {
			tb.Fatal(err)
		}
	}
}

func benchHeap() uint64 {
	runtime.GC()
	runtime.GC() // a second cycle frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkSessionMemory measures the live heap of a MemoryStore holding 100k
// and 1M sessions, per session (B/session), next to the store's own estimate
// (est-B/session, what /metrics serves as tether_session_store_bytes). It
// fails if the estimate is more than 20% off the measurement.
func BenchmarkSessionMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		name := fmt.Sprintf("sessions=%dk", n/1000)
		if n >= 1_000_000 {
			name = fmt.Sprintf("sessions=%dM", n/1_000_000)
		}
		b.Run(name, func(b *testing.B) {
			var measured, estimated float64
			for b.Loop() {
				before := benchHeap()
				s := NewMemoryStore(0, 0)
				now := time.Now().UnixNano()
				benchFill(b, s, n, now, now+int64(time.Hour))
				after := benchHeap()
				require.False(b, s.Len() != n, "store holds %d sessions, want %d", s.Len(), n)
				measured = float64(after-before) / float64(n)
				estimated = float64(s.EstimatedBytes()) / float64(n)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(measured, "B/session")
			b.ReportMetric(estimated, "est-B/session")
			off := math.Abs(estimated-measured) / measured
			require.LessOrEqual(b, off, 0.20, "EstimatedBytes is %.0f B/session, measured %.0f: %.0f%% off (limit 20%%)", estimated, measured, off*100)
		})
	}
}

// BenchmarkValidateDuringSweep expires 1M sessions at once (the clock jumps
// past their end) and measures the latency of validations of live sessions
// while Manager.Sweep reclaims them: p99-ns is the 99th percentile of those.
func BenchmarkValidateDuringSweep(b *testing.B) {
	const (
		expiring = 1_000_000
		live     = 8
	)
	var p50, p99, maxNS, sweepMS, validations float64
	for b.Loop() {
		b.StopTimer()
		var clock atomic.Int64
		clock.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
		store := NewMemoryStore(0, 0)
		m, _ := NewTestManager(b, func(c *Config) {
			c.Store, c.Now = store, func() time.Time { return time.Unix(0, clock.Load()) }
			c.TTL, c.IdleTimeout = 8*time.Hour, 4*time.Hour
			c.MaxSessions, c.MaxSessionsPerIdentity = 2*expiring, live
		})
		toks, peers := benchLogin(b, m, benchAdmin, live)
		t0 := clock.Load()
		benchFill(b, store, expiring, t0, t0+int64(time.Hour))
		clock.Add(int64(2 * time.Hour)) // the 1M are over; the live 8 are not
		runtime.GC()                    // start without the setup's GC debt
		lat := make([]int64, 0, 1<<22)
		ctx := context.Background()
		b.StartTimer()

		done := make(chan int)
		start := time.Now()
		go func() { done <- m.Sweep(ctx) }()
		var swept int
	loop:
		for i := 0; ; i++ {
			select {
			case swept = <-done:
				break loop
			default:
			}
			t := time.Now()
			_, err := m.Validate(ctx, toks[i%live], peers[i%live])
			d := time.Since(t)
			if err != nil { // timed: no testify in the loop
				b.Fatal(err)
			}
			if len(lat) < cap(lat) {
				lat = append(lat, int64(d))
			}
		}
		sweepMS = float64(time.Since(start)) / float64(time.Millisecond)
		b.StopTimer()
		require.False(b, swept != expiring || m.Len() != live, "swept %d sessions, %d left; want %d and %d", swept, m.Len(), expiring, live)
		require.False(b, len(lat) == 0, "no validation ran during the sweep")
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(math.Ceil(p*float64(len(lat))))-1]) }
		p50, p99, maxNS = pct(0.50), pct(0.99), float64(lat[len(lat)-1])
		validations = float64(len(lat))
		_ = m.Close()
		b.StartTimer()
	}
	b.ReportMetric(p50, "p50-ns")
	b.ReportMetric(p99, "p99-ns")
	b.ReportMetric(maxNS, "max-ns")
	b.ReportMetric(sweepMS, "sweep-ms")
	b.ReportMetric(validations, "validations")
}
