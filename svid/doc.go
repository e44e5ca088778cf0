// Package svid provides tetherd's identity: where its X.509 SVID and trust
// bundles come from, and the fingerprint that sessions are bound to.
//
// Three sources exist. The SPIFFE Workload API (OpenWorkload, over go-spiffe's
// X509Source, which follows rotation by itself and keeps the last SVID while
// the agent is away; NewWorkloadSource is the bare X509Source). PEM files (FileSource), re-read when they change, as
// spiffe-helper rewrites them, and on demand (SIGHUP); a half-written or
// garbage file never replaces the last good identity. And a fixed SVID and
// bundle set (StaticSource), for tests and for `tetherd dev`, whose throwaway
// CA lives in internal/devpki.
//
// A source serves exactly one SPIFFE ID (PinState): the one it is given,
// else the one it starts with. Among several SVIDs (a workload matching
// several registration entries) it picks the one with that ID, and when it
// is handed none, it keeps the last SVID it had with that ID and says so in
// its PinState; it never serves another identity.
//
// Fingerprint computes the RFC 8705 x5t#S256 of a leaf certificate.
package svid
