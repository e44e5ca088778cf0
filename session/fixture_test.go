package session

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/internal/testutil"
)

// NewTestManager is the Manager every test, fuzzer and benchmark of the
// package runs against (exported from this test file for package
// session_test): issuer spiffe://example.org/tetherd, sessions of an hour
// that idle out after ten minutes, no login rate limit, swept hourly (tests
// call Sweep themselves), on the returned manual clock. mod, if set, changes
// any of it before the Manager is made. The Manager is closed when the test
// ends.
func NewTestManager(tb testing.TB, mod func(*Config)) (*Manager, *testutil.Clock) {
	tb.Helper()
	clk := testutil.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	cfg := Config{
		Issuer: spiffeid.RequireFromString("spiffe://example.org/tetherd"), TTL: time.Hour, IdleTimeout: 10 * time.Minute,
		LoginRate: rate.Inf, Now: clk.Now, SweepInterval: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewManager(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = m.Close() })
	return m, clk
}
