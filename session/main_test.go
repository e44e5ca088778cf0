package session_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// manager, server, file watcher and client connection a test opens must be
// closed by the test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
