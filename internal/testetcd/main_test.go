package testetcd_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine outlives them: every client,
// connection and watched process must be done with when its test ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
