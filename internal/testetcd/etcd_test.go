package testetcd_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tetherproject/tether/internal/testetcd"
	"github.com/tetherproject/tether/internal/testpki"
)

// TestClusterMTLS: three members start; a client presenting an SVID of the
// trust domain writes and reads, through any member and through HAProxy in
// front of them; a client without a certificate, or with an SVID of another
// trust domain, is refused at the handshake and writes nothing.
func TestClusterMTLS(t *testing.T) {
	c := testetcd.Start(t, testetcd.Config{})
	require.Len(t, c.Endpoints(), 3)
	svid := c.CA().Issue(t, "spiffe://example.org/tetherd")
	cli := c.Client(t, svid)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/tether/k", "v1")
	require.NoError(t, err)
	for i, ep := range c.Endpoints() {
		resp, err := c.ClientOf(t, svid, ep).Get(ctx, "/tether/k") // linearizable: a quorum read
		require.NoError(t, err, "member %d", i)
		require.Len(t, resp.Kvs, 1, "member %d", i)
		require.Equal(t, "v1", string(resp.Kvs[0].Value), "member %d", i)
	}

	t.Run("through-haproxy", func(t *testing.T) {
		h := testetcd.StartHAProxy(t, hosts(c.Endpoints())...)
		viaLB := c.ClientOf(t, svid, "https://"+h.Addr())
		_, err := viaLB.Put(ctx, "/tether/lb", "v2")
		require.NoError(t, err)
		resp, err := cli.Get(ctx, "/tether/lb")
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		require.Equal(t, "v2", string(resp.Kvs[0].Value))
	})

	// A client of another trust domain: Go's client would send nothing,
	// since its issuer is not among the CAs the member asks for; this one
	// presents its SVID anyway, as an attacker would.
	other := testpki.NewCA(t, "other.org").Issue(t, "spiffe://other.org/tetherd")
	otherTLS := func() *tls.Config {
		cfg := c.ClientTLS(nil)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert := testpki.TLSCertificate(other)
			return &cert, nil
		}
		return cfg
	}
	for _, tc := range []struct {
		name    string
		tls     func() *tls.Config
		refusal string
	}{
		{"fail/no-certificate", func() *tls.Config { return c.ClientTLS(nil) }, "certificate required"},
		{"fail/other-trust-domain", otherTLS, "unknown certificate authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// In TLS 1.3 the server judges the client's certificate after
			// the client's side of the handshake: its alert comes with the
			// first read.
			conn, err := tls.Dial("tcp", host(c.Endpoint(0)), tc.tls())
			if err == nil {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				_ = conn.Close()
			}
			require.ErrorContains(t, err, tc.refusal)

			bad, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), TLS: tc.tls(), Logger: zap.NewNop()})
			require.NoError(t, err)
			defer func() { require.NoError(t, bad.Close()) }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err = bad.Put(ctx, "/tether/k", "forged")
			require.Error(t, err)
		})
	}
	resp, err := cli.Get(ctx, "/tether/k")
	require.NoError(t, err)
	require.Equal(t, "v1", string(resp.Kvs[0].Value), "the refused clients wrote nothing")
}

// TestMemberAndQuorumLoss: the cluster serves with one member stopped
// (SIGTERM) or killed (SIGKILL); with two killed, writes fail within a
// deadline; restarting them on their data folders brings the cluster back,
// with what was written before.
func TestMemberAndQuorumLoss(t *testing.T) {
	c := testetcd.Start(t, testetcd.Config{})
	require.Equal(t, 2, c.Quorum())
	cli := c.Client(t, c.CA().Issue(t, "spiffe://example.org/tetherd"))
	mustPut(t, cli, "/tether/before", "1")

	c.StopMember(t, 2)
	require.False(t, c.Running(2))
	mustPut(t, cli, "/tether/one-stopped", "1")
	c.StartMember(t, 2)
	c.WaitHealthy(t, 30*time.Second)

	c.KillMember(t, 0)
	mustPut(t, cli, "/tether/one-killed", "1")
	c.WaitHealthy(t, 30*time.Second, 1, 2)

	c.KillMember(t, 1)
	putFails(t, cli, "/tether/no-quorum", 30*time.Second)
	hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
	defer hcancel()
	require.Error(t, c.Health(hctx, 2), "the last member is not healthy without a quorum")

	c.StartMember(t, 0)
	c.StartMember(t, 1)
	c.WaitHealthy(t, 60*time.Second)
	mustPut(t, cli, "/tether/after", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, k := range []string{"/tether/before", "/tether/one-stopped", "/tether/one-killed", "/tether/after"} {
		resp, err := cli.Get(ctx, k)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, k)
	}
}

// host is the host:port of an https:// URL.
func host(u string) string { return strings.TrimPrefix(u, "https://") }

func hosts(us []string) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = host(u)
	}
	return out
}

// mustPut writes key, retrying while the cluster elects a leader, and fails
// the test if no write succeeds within 30 s.
func mustPut(t *testing.T, cli *clientv3.Client, key, value string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Put(ctx, key, value)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s: no success within 30s: %v", key, err)
		}
	}
}

// putFails writes key until a write fails, and fails the test if writes
// still succeed after within.
func putFails(t *testing.T, cli *clientv3.Client, key string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, key, "x")
		cancel()
		if err != nil {
			t.Logf("writes fail %s after the quorum loss: %v", time.Since(start).Round(time.Millisecond), err)
			return
		}
		if time.Since(start) > within {
			t.Fatalf("put %s: writes still succeed %s after the quorum loss", key, within)
		}
	}
}
