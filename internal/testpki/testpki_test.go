package testpki_test

import (
	"net"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/testpki"
)

// TestIssueNotBeforeIncreases: leaves issued one after another carry strictly
// increasing NotBefore (a rotated SVID is newer than the one it replaces),
// never in the future, unless an option sets it.
func TestIssueNotBeforeIncreases(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	var prev time.Time
	for i := range 100 {
		leaf := ca.Issue(t, "spiffe://example.org/admin/alice").Certificates[0]
		if !leaf.NotBefore.After(prev) {
			t.Fatalf("leaf %d: NotBefore %s not after the previous leaf's %s", i, leaf.NotBefore, prev)
		}
		if leaf.NotBefore.After(time.Now()) {
			t.Fatalf("leaf %d: NotBefore %s is in the future", i, leaf.NotBefore)
		}
		prev = leaf.NotBefore
	}
	nb := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	leaf := ca.Issue(t, "spiffe://example.org/admin/alice", testpki.WithValidity(nb, nb.Add(time.Hour))).Certificates[0]
	if !leaf.NotBefore.Equal(nb) {
		t.Fatalf("WithValidity: NotBefore %s, want %s", leaf.NotBefore, nb)
	}
}

// TestWithIPs: a leaf with IP SANs keeps its one SPIFFE ID, and a leaf
// without the option has no IP SAN.
func TestWithIPs(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	s := ca.Issue(t, "spiffe://example.org/etcd/m0", testpki.WithIPs(net.IPv4(127, 0, 0, 1)))
	leaf := s.Certificates[0]
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("IP SANs %v, want [127.0.0.1]", leaf.IPAddresses)
	}
	if len(leaf.URIs) != 1 || s.ID.String() != "spiffe://example.org/etcd/m0" {
		t.Fatalf("URI SANs %v, ID %s: want the one SPIFFE ID", leaf.URIs, s.ID)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if ips := ca.Issue(t, "spiffe://example.org/a").Certificates[0].IPAddresses; len(ips) != 0 {
		t.Fatalf("IP SANs %v without WithIPs", ips)
	}
}
