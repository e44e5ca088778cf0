package testetcd

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// logBuffer is a testing.TB that keeps what Logf writes.
type logBuffer struct {
	testing.TB
	logs atomic.Value // string
}

func (l *logBuffer) Logf(format string, args ...any) {
	l.TB.Logf(format, args...)
	old, _ := l.logs.Load().(string)
	l.logs.Store(old + format + "\n")
}

// TestStartAgainOnTakenPort: a member whose port was taken before etcd
// could bind it (another process came first) makes Start begin again on
// new ports, and the cluster comes up.
func TestStartAgainOnTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	var calls atomic.Int32
	addrFor = func(tb testing.TB) string {
		if calls.Add(1) == 2 { // member m0's peer port, on the first try
			return taken.Addr().String()
		}
		return freeAddr(tb)
	}
	t.Cleanup(func() { addrFor = freeAddr })

	lb := &logBuffer{TB: t}
	c := Start(lb, Config{})
	logs, _ := lb.logs.Load().(string)
	require.True(t, strings.Contains(logs, "starting again on new ports"), "Start did not start again: %q", logs)
	require.Greater(t, calls.Load(), int32(6), "the second try took new ports")
	for i := range c.Size() {
		require.True(t, c.Running(i))
	}
}

// TestDistinctPorts: two picks of a free port a moment apart can give the
// same port (the kernel handed it out again once the first was closed);
// a cluster's members still get distinct addresses, and it comes up on its
// first try.
func TestDistinctPorts(t *testing.T) {
	same := freeAddr(t)
	var calls atomic.Int32
	addrFor = func(tb testing.TB) string {
		if calls.Add(1) <= 2 { // m0's client and peer ports, alike
			return same
		}
		return freeAddr(tb)
	}
	t.Cleanup(func() { addrFor = freeAddr })

	lb := &logBuffer{TB: t}
	c := Start(lb, Config{})
	logs, _ := lb.logs.Load().(string)
	require.NotContains(t, logs, "starting again", "the duplicate was not caught when the ports were picked")
	seen := map[string]bool{}
	for _, m := range c.members {
		for _, u := range []string{m.clientURL, m.peerURL} {
			require.False(t, seen[u], "%s given twice", u)
			seen[u] = true
		}
	}
	for i := range c.Size() {
		require.True(t, c.Running(i))
	}
}
