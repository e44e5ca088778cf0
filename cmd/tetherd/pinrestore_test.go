package main

// The pinned identity restored by the very SVID files tetherd started on:
// files of another ID written over them, then the original files put back
// (an operator undoing a mistake). tetherd must be ready again, saying so
// once, without a SIGHUP — with --spiffe-id and without it (then the pin is
// the ID it started with). Waits are for events and answers, with
// deadlines.

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/svid"
)

func TestPinRestoredByTheOriginalFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"pinned", []string{"--spiffe-id", ftServerID}},
		{"unpinned", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testpki.NewCA(t, "example.org")
			dir := t.TempDir()
			own, other := ca.Issue(t, ftServerID), ca.Issue(t, opOtherID)
			admin := ca.Issue(t, ftAdminID)
			ownFP := svid.Fingerprint(own.Certificates[0])
			files := ca.WriteFiles(t, dir, "svid", own)
			p := ftStartEnv(t, opEnv(), append([]string{"--svid-cert", files.Cert, "--svid-key", files.Key,
				"--bundle", files.Bundle, "--admin", "spiffe://example.org/admin/*"}, tc.args...)...)
			p.serving()
			p.waitReady(http.StatusOK, 10*time.Second)

			// Twice: a loss after a restore is seen as the first was.
			for round := 1; round <= 2; round++ {
				ca.WriteFiles(t, dir, "svid", other)
				if missing := p.Event(t, "identity.pin_missing", round, 10*time.Second); !reflect.DeepEqual(missing["offered"], []any{opOtherID}) {
					t.Fatalf("round %d: identity.pin_missing %v", round, missing)
				}
				p.waitReady(http.StatusServiceUnavailable, 10*time.Second)

				ca.WriteFiles(t, dir, "svid", own) // the very bytes tetherd started on; no SIGHUP
				p.Event(t, "identity.pin_restored", round, 10*time.Second)
				p.waitReady(http.StatusOK, 10*time.Second)
				if fp := p.servedLeaf(admin); fp != ownFP {
					t.Fatalf("round %d: serving %q, want its own SVID %q", round, fp, ownFP)
				}
				if n := len(p.Events("identity.pin_restored")); n != round {
					t.Fatalf("round %d: %d identity.pin_restored lines, want one per restore", round, n)
				}
			}
			if evs := p.Events("identity.reload_failed"); len(evs) != 0 {
				t.Fatalf("identity.reload_failed %v: a loss is said as identity.pin_missing", evs)
			}
			p.sigterm()
		})
	}
}
