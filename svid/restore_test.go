package svid_test

// The pinned identity restored by the very SVID the source held before it
// was lost: SVID files of another ID written over the source's, then the
// original files put back (an operator undoing a mistake, a backup
// restored); or the agent handing out the same SVID again. The source must
// be whole again (Pin().Missing false), serving that SVID, and must never
// take it back once it has expired.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/svid"
)

// TestFileSourcePinRestoredBySameFiles: the original files back after
// another ID's restore the pin, by SIGHUP (Reload) and by the poller, with
// --spiffe-id and without (then the ID the files held at start is pinned).
// Twice: the second loss is seen as the first was.
func TestFileSourcePinRestoredBySameFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pinned bool
		poll   bool
	}{
		{"pinned/reload", true, false},
		{"pinned/poll", true, true},
		{"unpinned/reload", false, false},
		{"unpinned/poll", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testpki.NewCA(t, "example.org")
			dir := t.TempDir()
			own, other := ca.Issue(t, pinID), ca.Issue(t, otherID)
			files := ca.WriteFiles(t, dir, "svid", own)
			rl := newReloads()
			cfg := svid.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
				Interval: time.Hour, OnReload: rl.record}
			if tc.pinned {
				cfg.ID = spiffeid.RequireFromString(pinID)
			}
			if tc.poll {
				cfg.Interval = 10 * time.Millisecond
			}
			src, err := svid.NewFileSource(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = src.Close() })

			// reload is SIGHUP, or waits for the poller to report the files
			// as written. WriteFiles is not atomic: under load the poller
			// may catch a half-written pair on two ticks in a row and report
			// it (a parse failure, never nil nor ErrNotPinned); it then
			// reports the files as they end up, which is what is awaited.
			reload := func() error {
				if !tc.poll {
					return src.Reload()
				}
				for {
					if err := rl.next(t); err == nil || errors.Is(err, svid.ErrNotPinned) {
						return err
					}
				}
			}
			for round := 1; round <= 2; round++ {
				ca.WriteFiles(t, dir, "svid", other)
				require.ErrorIs(t, reload(), svid.ErrNotPinned, "round %d", round)
				require.True(t, src.Pin().Missing, "round %d", round)
				require.Equal(t, own.Certificates[0].Raw, served(t, src).Certificates[0].Raw)

				ca.WriteFiles(t, dir, "svid", own) // the very same bytes as at start
				require.NoError(t, reload(), "round %d", round)
				pin := src.Pin()
				require.NoError(t, pin.Err(), "round %d: the original files are back", round)
				require.Equal(t, []spiffeid.ID{own.ID}, pin.Offered)
				require.Equal(t, own.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
			}
			require.NoError(t, src.Reload(), "nothing changed since: a no-op")
		})
	}
}

// TestFileSourceRestoredExpiredRefused: the original files back after their
// certificate expired are refused, as any expired SVID is: the pin stays
// missing, the source stays not ready.
func TestFileSourceRestoredExpiredRefused(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	now := time.Now()
	own := ca.Issue(t, pinID, testpki.WithValidity(now.Add(-time.Minute), now.Add(time.Second)))
	files := ca.WriteFiles(t, dir, "svid", own)
	src, err := svid.NewFileSource(svid.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		ID: spiffeid.RequireFromString(pinID), Interval: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	ca.WriteFiles(t, dir, "svid", ca.Issue(t, otherID))
	require.ErrorIs(t, src.Reload(), svid.ErrNotPinned)
	testutil.WaitFor(t, 10*time.Second, "the original SVID to expire", func() bool {
		return !time.Now().Before(own.Certificates[0].NotAfter)
	})
	ca.WriteFiles(t, dir, "svid", own)
	require.ErrorContains(t, src.Reload(), "expired")
	require.ErrorIs(t, src.Pin().Err(), svid.ErrNotPinned)
	require.Error(t, svid.Usable(src, time.Now()))
}

// TestWorkloadSourcePinRestoredBySameSVID: the agent stops handing out the
// pinned SVID, then hands out that same SVID again (the entry restored
// before the SVID was renewed): whole again.
func TestWorkloadSourcePinRestoredBySameSVID(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := startFake(t)
	own, other := ca.Issue(t, pinID), ca.Issue(t, otherID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), own))
	var ups updates
	src, err := svid.OpenWorkload(context.Background(), svid.WorkloadConfig{
		Addr: fw.Addr(), Timeout: 10 * time.Second, ID: spiffeid.RequireFromString(pinID), OnUpdate: ups.record,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	for round := 1; round <= 2; round++ {
		require.NoError(t, fw.SetSVIDs(ca.Bundle(), other))
		testutil.WaitFor(t, 10*time.Second, "the pin missing", func() bool { p, _ := ups.last(); return p.Missing })
		require.Equal(t, own.Certificates[0].Raw, served(t, src).Certificates[0].Raw)

		require.NoError(t, fw.SetSVIDs(ca.Bundle(), other, own))
		testutil.WaitFor(t, 10*time.Second, "the pin restored", func() bool { p, _ := ups.last(); return !p.Missing })
		require.NoError(t, src.Pin().Err(), "round %d", round)
		require.Equal(t, own.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
	}
}
