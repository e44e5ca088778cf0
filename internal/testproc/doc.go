// Package testproc runs the programs tether's tests drive — tetherd, the
// tether CLI, SPIRE's server and agent, the integration suite's probe — the
// way the fault, CLI and integration tests all need them run: started with
// arguments and an environment, their output captured, waited on for a JSON
// log event, an HTTP answer or their exit against a deadline, stopped by
// process ID (SIGTERM, then SIGKILL), and killed when the test ends, with
// their output in the test's log when it failed.
//
// A child gets a process group of its own, so that a signal reaches
// everything it forked (runuser and the program it runs), and a parent-death
// signal on Linux, so that a test binary killed by a timeout or a panic does
// not leave a daemon running behind it.
//
// A main function can run in the test's own process instead (StartFunc),
// when a test must reach into it (a manual clock, say): it is watched and
// stopped the same way, its context standing in for SIGTERM.
//
// Every wait has a deadline and fails with what it last saw; nothing sleeps
// on a guess. For tests only.
package testproc
