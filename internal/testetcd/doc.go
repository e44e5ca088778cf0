// Package testetcd starts the real etcd and HAProxy that tether's replica
// tests run against, as separate processes, through the shared harness
// internal/testproc.
//
// Start runs an etcd cluster (three members unless told otherwise) on
// loopback: free ports, data folders in the test's t.TempDir(), mutual TLS for
// clients and peers alike. Every certificate is an X.509 SVID of one test
// trust domain (internal/testpki), and etcd trusts that trust domain's bundle
// for both (--client-cert-auth, --peer-client-cert-auth): a client gets in by
// presenting an SVID of the trust domain, as tetherd will with its own. The
// members' SVIDs carry the IP SAN 127.0.0.1 beside their SPIFFE ID, because
// etcd checks its peers' certificates against their addresses. Start returns
// once every member reports healthy (/health, a quorum read); a test loses a
// member (KillMember: SIGKILL, StopMember: SIGTERM) and restarts it on the
// same data folder (StartMember), then waits for health again (WaitHealthy).
//
// StartHAProxy runs Debian's haproxy in TCP mode in front of given backend
// addresses: a TLS-passthrough balancer, so that TLS ends at the backend and
// the backend sees the client's own certificate.
//
// The etcd binary comes from scripts/etcd-build ($TETHER_ETCD_BIN, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/tether-build/etcd-3.7.3/bin/etcd), haproxy
// from the PATH (or /usr/sbin); scripts/test provides both. When one is
// missing, or under -short, the test skips saying why, except with CI=true,
// where it fails: CI must never pass by skipping.
//
// Every process is stopped by its process ID when its test ends and dies
// with the test binary (parent-death signal); its output is in the test's log
// when the test failed. Every wait has a deadline. For tests only.
package testetcd
