package devpki_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them (the
// file source that loads what the CA wrote must be closed).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
