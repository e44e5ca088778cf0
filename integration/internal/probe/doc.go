// Package probe is the test side of the integration suite's probe: a small
// program (integration/internal/cmd/probe) that runs as another Linux user
// through runuser, so that the SPIRE agent attests it by uid, fetches that
// user's X509-SVID from the Workload API, and performs requests against
// tetherd over mTLS on command.
//
// The probe stays running for the whole suite. The test writes one Command
// per line to its standard input and reads one Result per line from its
// standard output (JSON). Tokens never cross that pipe: the probe keeps them
// in named slots, and moves them between users only through files
// (OpSaveToken, OpLoadToken), so that no token reaches a test log. An SVID can
// be pinned under a name (OpPin) and presented again after the Workload API
// has rotated it, to show that the old leaf is refused.
package probe
