//go:build race

package testproc

// Race reports whether the tests run with the race detector: the binaries
// they build are built with it too.
const Race = true
