//go:build race

package integration

// raceEnabled: the suite runs under -race, so tetherd is built with -race too.
const raceEnabled = true
