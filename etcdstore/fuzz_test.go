package etcdstore

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/session"
)

// FuzzDecode feeds what a writer to etcd controls (any value under any
// key) to the parsers that read it: none may panic, and whatever they
// accept says exactly what a replica signed (the seeds' genuine record,
// tombstone and key): an envelope may be reworded, its content not.
func FuzzDecode(f *testing.F) {
	ca := testpki.NewCA(f, "example.org")
	issuer := spiffeid.RequireFromString(tetherdID)
	key, err := session.NewKey()
	require.NoError(f, err)
	keys := map[string]ed25519.PublicKey{key.KID(): key.Public()}
	owner := spiffeid.RequireFromString("spiffe://example.org/admin/alice")
	rec := session.Record{ID: "sessionid", Owner: owner, CreatedAt: 1, ExpiresAt: 2, Roles: []string{"restore"}, Needed: 1,
		Binding: session.Binding{Token: session.TokenHash{7}, Fingerprint: "fp", NotBefore: time.Unix(3, 0)}}
	recVal, err := encodeRecord(key, tetherdID, rec)
	require.NoError(f, err)
	tomb := session.Tombstone{Token: session.TokenHash{7}, Owner: owner, ID: "sessionid", Reason: session.ReasonEnded, Until: 5}
	tombVal, err := encodeTombstone(key, tetherdID, tomb)
	require.NoError(f, err)
	annVal, err := encodeAnnouncement(key, tetherdID, "r1", ca.Issue(f, tetherdID), time.Now())
	require.NoError(f, err)
	for _, v := range []string{recVal, tombVal, annVal, "", "{}", `{"p":"","sig":""}`, `{"p":"e30","kid":"x","sig":"AA"}`} {
		f.Add(v)
	}
	hexHash := layout{""}.tomb(tomb.Token)[len("tombstones/"):]
	f.Fuzz(func(t *testing.T, raw string) {
		if r, err := decodeRecord([]byte(raw), "sessionid", tetherdID, keys); err == nil {
			want := rec
			want.LastUsed = rec.CreatedAt
			want.Binding.NotBefore = rec.Binding.NotBefore.UTC()
			require.Equal(t, want, r, "a record that no replica signed was accepted: %q", raw)
		}
		if got, err := decodeTombstone(hexHash, []byte(raw), tetherdID, keys); err == nil {
			require.Equal(t, tomb, got, "a tombstone that no replica signed was accepted: %q", raw)
		}
		if pub, err := decodeAnnouncement([]byte(raw), key.KID(), issuer, ca.Bundle()); err == nil {
			require.True(t, pub.Equal(key.Public()), "an announcement no SVID of tetherd signed was accepted: %q", raw)
		}
	})
}
