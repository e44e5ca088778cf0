// Package spire runs a real SPIRE server and agent for tether's integration
// tests: join_token node attestation, the unix workload attestor, the disk
// KeyManager, everything on loopback in a short folder directly under /tmp
// (Unix socket paths are limited to about 107 bytes).
//
// The harness drives the spire-server and spire-agent binaries built by
// scripts/spire-build; it never links SPIRE's code, so tether's go.mod does not
// inherit SPIRE's dependencies. It waits by polling health with deadlines and
// stops its processes by PID. Workload identities are Linux users, one
// registration entry each, selected by unix:uid (see EnsureUser).
package spire
