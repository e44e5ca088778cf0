package testutil_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testutil"
)

// TestFreeAddrs: the addresses are loopback, distinct, and free once
// returned (each can be listened on).
func TestFreeAddrs(t *testing.T) {
	addrs := testutil.FreeAddrs(t, 64)
	require.Len(t, addrs, 64)
	seen := map[string]bool{}
	for _, a := range addrs {
		require.False(t, seen[a], "%s handed out twice", a)
		seen[a] = true
		l, err := net.Listen("tcp", a)
		require.NoError(t, err, "%s is free", a)
		require.NoError(t, l.Close())
	}
}
