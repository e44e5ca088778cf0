package testpki_test

import (
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
