// Package replicas holds the tests of tetherd replicas as an operator runs
// them: three real tetherd processes with --store etcd on a real 3-member
// etcd cluster (SPIFFE mTLS, internal/testetcd), HAProxy in TCP mode in
// front, and the real tether CLI going through it. It has no code of its
// own: everything is in its tests.
package replicas
