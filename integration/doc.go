// Package integration is tether's end-to-end suite against a real SPIRE
// server and agent and the real tetherd binary.
//
// The first test that runs builds tetherd and the probe
// (integration/internal/cmd/probe), starts one SPIRE server and agent for the
// whole run (integration/internal/spire), registers tetherd (uid 0, the test
// process's own user, with a short X509-SVID TTL so that it rotates during the
// run), two admins and a non-admin (Linux users it creates when missing),
// starts tetherd against the agent's Workload API, and runs one probe per
// user through runuser. The tests then drive the probes: login, use, logout,
// copied tokens, tetherd's own SVID rotation, an admin's rotation and rebind,
// an agent outage, a tetherd restart. TestMain stops everything at the end.
//
// The suite needs root and the SPIRE binaries of scripts/spire-build. Without
// them it skips, except when CI=true: then it fails. See README.md.
package integration
