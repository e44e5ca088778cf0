// Package svid provides tetherd's identity: where its X.509 SVID and trust
// bundles come from, and the fingerprint that sessions are bound to.
//
// Three sources exist. The SPIFFE Workload API (NewWorkloadSource, go-spiffe's
// X509Source, which follows rotation by itself and keeps the last SVID while
// the agent is away). PEM files (FileSource), re-read when they change, as
// spiffe-helper rewrites them, and on demand (SIGHUP); a half-written or
// garbage file never replaces the last good identity. And a fixed SVID and
// bundle set (StaticSource), for tests and for `tetherd dev`, whose throwaway
// CA lives in internal/devpki.
//
// Fingerprint computes the RFC 8705 x5t#S256 of a leaf certificate.
package svid
