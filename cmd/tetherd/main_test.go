package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/tetherproject/tether/internal/testproc"
)

// tetherdBinary is the tetherd built for this test run by TestMain; the
// fault tests run it as a separate process, as an operator would.
var tetherdBinary string

// TestMain builds the tetherd binary into a temporary folder, runs the
// tests, and fails them if any goroutine outlives them (in-process runs of
// tetherd must stop everything they start).
func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, remove, err := testproc.BuildTemp(false, ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	tetherdBinary = filepath.Join(dir, "tetherd")
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines outlived the tests: %v\n", err)
			return 1
		}
	}
	return code
}
