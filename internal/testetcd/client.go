package testetcd

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Client is an etcd client of every member, presenting s over mTLS; it is
// closed when the test ends. It does not wait for a connection: its first
// call does, within that call's context.
func (c *Cluster) Client(tb testing.TB, s *x509svid.SVID) *clientv3.Client {
	tb.Helper()
	return c.ClientOf(tb, s, c.Endpoints()...)
}

// ClientOf is Client for the given endpoints only (e.g. one member, or a
// balancer in front of the cluster).
func (c *Cluster) ClientOf(tb testing.TB, s *x509svid.SVID, endpoints ...string) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         c.ClientTLS(s),
		DialTimeout: 5 * time.Second,
		// The client logs every retry of a refused or failed call; the test
		// asserts on the calls' errors instead.
		Logger: zap.NewNop(),
	})
	if err != nil {
		tb.Fatalf("testetcd: client: %v", err)
	}
	tb.Cleanup(func() {
		if err := cli.Close(); err != nil {
			tb.Errorf("testetcd: close client: %v", err)
		}
	})
	return cli
}
