package svid_test

// Pinning: a source serves exactly one SPIFFE ID, picked among several
// SVIDs (a workload matching several registration entries), and never
// another when the pinned one is gone.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tetherproject/tether/internal/fakeworkload"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/svid"
)

const (
	pinID   = "spiffe://example.org/tetherd"
	otherID = "spiffe://example.org/other"
)

// startFake starts a fake Workload API on a short socket path.
func startFake(t *testing.T) *fakeworkload.Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "pin") // unix socket paths are short
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fw := fakeworkload.New(filepath.Join(dir, "api.sock"))
	require.NoError(t, fw.Start())
	t.Cleanup(fw.Stop)
	return fw
}

// updates records what OnUpdate reports.
type updates struct {
	mu   sync.Mutex
	pins []svid.PinState
}

func (u *updates) record(_ *x509svid.SVID, p svid.PinState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.pins = append(u.pins, p)
}

func (u *updates) last() (svid.PinState, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.pins) == 0 {
		return svid.PinState{}, 0
	}
	return u.pins[len(u.pins)-1], len(u.pins)
}

func served(t *testing.T, src x509svid.Source) *x509svid.SVID {
	t.Helper()
	s, err := src.GetX509SVID()
	require.NoError(t, err)
	return s
}

func TestWorkloadSourcePinned(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := startFake(t)
	other, pinned := ca.Issue(t, otherID), ca.Issue(t, pinID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), other, pinned)) // the pinned one second: not go-spiffe's default
	var ups updates
	src, err := svid.OpenWorkload(context.Background(), svid.WorkloadConfig{
		Addr: fw.Addr(), Timeout: 10 * time.Second, ID: spiffeid.RequireFromString(pinID), OnUpdate: ups.record,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	require.Equal(t, pinned.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
	pin := src.Pin()
	require.True(t, pin.Configured)
	require.False(t, pin.Missing)
	require.NoError(t, pin.Err())
	require.Equal(t, []spiffeid.ID{other.ID, pinned.ID}, pin.Offered)

	// The pinned entry goes: the last pinned SVID stays, never the other.
	_, n := ups.last()
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), other))
	testutil.WaitFor(t, 10*time.Second, "the update without the pinned SVID", func() bool { _, m := ups.last(); return m > n })
	require.Equal(t, pinned.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
	pin = src.Pin()
	require.True(t, pin.Missing)
	require.ErrorIs(t, pin.Err(), svid.ErrNotPinned)
	require.ErrorContains(t, pin.Err(), pinID)
	require.ErrorContains(t, pin.Err(), otherID)

	// It comes back, rotated, first or not.
	rotated := ca.Issue(t, pinID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), rotated, other))
	testutil.WaitFor(t, 10*time.Second, "the rotated pinned SVID", func() bool { return !src.Pin().Missing })
	require.Equal(t, rotated.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
}

func TestWorkloadSourcePinsTheFirstID(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := startFake(t)
	first, second := ca.Issue(t, pinID), ca.Issue(t, otherID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), first, second))
	src, err := svid.OpenWorkload(context.Background(), svid.WorkloadConfig{Addr: fw.Addr(), Timeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	require.Equal(t, pinID, served(t, src).ID.String())
	require.False(t, src.Pin().Configured)

	// The agent now lists the other ID first: the identity does not follow.
	rotated := ca.Issue(t, pinID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), second, rotated))
	testutil.WaitFor(t, 10*time.Second, "the rotated SVID", func() bool {
		return served(t, src).Certificates[0].Equal(rotated.Certificates[0])
	})
	require.Equal(t, pinID, src.Pin().ID.String())
}

func TestWorkloadSourcePinnedAbsentAtStart(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := startFake(t)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), ca.Issue(t, otherID)))
	_, err := svid.OpenWorkload(context.Background(), svid.WorkloadConfig{
		Addr: fw.Addr(), Timeout: 300 * time.Millisecond, ID: spiffeid.RequireFromString(pinID),
	})
	require.Error(t, err)
	require.ErrorContains(t, err, "no SVID for "+pinID)
	require.ErrorContains(t, err, "only "+otherID)
	require.ErrorIs(t, err, svid.ErrNotPinned)

	// The entry shows up while tetherd waits (as at the agent's next sync).
	type result struct {
		src *svid.WorkloadSource
		err error
	}
	done := make(chan result, 1)
	fetches := fw.Fetches()
	go func() {
		src, err := svid.OpenWorkload(context.Background(), svid.WorkloadConfig{
			Addr: fw.Addr(), Timeout: 10 * time.Second, ID: spiffeid.RequireFromString(pinID),
		})
		done <- result{src, err}
	}()
	testutil.WaitFor(t, 10*time.Second, "the source to fetch", func() bool { return fw.Fetches() > fetches })
	pinned := ca.Issue(t, pinID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), ca.Issue(t, otherID), pinned))
	r := <-done
	require.NoError(t, r.err)
	t.Cleanup(func() { _ = r.src.Close() })
	require.Equal(t, pinned.Certificates[0].Raw, served(t, r.src).Certificates[0].Raw)
}

func TestFileSourcePinned(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	first := ca.Issue(t, pinID)
	files := ca.WriteFiles(t, dir, "svid", first)
	cfg := svid.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: time.Hour}

	// At start: the files must hold the pinned ID.
	bad := cfg
	bad.ID = spiffeid.RequireFromString(otherID)
	_, err := svid.NewFileSource(bad)
	require.ErrorIs(t, err, svid.ErrNotPinned)
	require.ErrorContains(t, err, files.Cert)

	// Not configured: the ID the files hold at start is pinned.
	var errs []error
	cfg.OnReload = func(err error) { errs = append(errs, err) }
	src, err := svid.NewFileSource(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	require.Equal(t, svid.PinState{ID: first.ID, Offered: []spiffeid.ID{first.ID}}, src.Pin())

	// Another identity written over them: refused, the last one served.
	ca.WriteFiles(t, dir, "svid", ca.Issue(t, otherID))
	err = src.Reload()
	require.ErrorIs(t, err, svid.ErrNotPinned)
	require.Equal(t, first.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
	pin := src.Pin()
	require.True(t, pin.Missing)
	require.Equal(t, []spiffeid.ID{spiffeid.RequireFromString(otherID)}, pin.Offered)

	// The pinned identity again, rotated: taken, and the pin is whole.
	second := ca.Issue(t, pinID)
	ca.WriteFiles(t, dir, "svid", second)
	require.NoError(t, src.Reload())
	require.Equal(t, second.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
	require.NoError(t, src.Pin().Err())
	require.Len(t, errs, 2)
	require.True(t, errors.Is(errs[0], svid.ErrNotPinned) && errs[1] == nil, "%v", errs)
}

// TestWorkloadSourceNoIdentityIsMissing: an agent that stops issuing this
// process any identity (its only registration entry was deleted) ends the
// watch with PermissionDenied and sends no update; the pinned ID is then
// missing (not ready), the last SVID is still served, and it is restored
// when the entry comes back. An agent that is merely unavailable leaves the
// pin as it was.
func TestWorkloadSourceNoIdentityIsMissing(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := startFake(t)
	pinned := ca.Issue(t, pinID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), pinned))
	var ups updates
	src, err := svid.OpenWorkload(context.Background(), svid.WorkloadConfig{
		Addr: fw.Addr(), Timeout: 10 * time.Second, ID: spiffeid.RequireFromString(pinID), OnUpdate: ups.record,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	fetches := fw.Fetches()
	fw.SetError(codes.Unavailable, "the agent is restarting")
	testutil.WaitFor(t, 20*time.Second, "the client's next watch", func() bool { return fw.Fetches() > fetches })
	require.False(t, src.Pin().Missing, "an unavailable agent is not a missing identity")

	fw.SetError(codes.PermissionDenied, "no identity issued")
	testutil.WaitFor(t, 20*time.Second, "the pinned ID missing", func() bool { return src.Pin().Missing })
	pin, _ := ups.last()
	require.True(t, pin.Missing, "OnUpdate was told")
	require.Empty(t, pin.Offered)
	require.ErrorIs(t, src.Pin().Err(), svid.ErrNotPinned)
	require.Equal(t, pinned.Certificates[0].Raw, served(t, src).Certificates[0].Raw, "the last SVID is still served")

	rotated := ca.Issue(t, pinID)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), rotated))
	testutil.WaitFor(t, 20*time.Second, "the pinned ID back", func() bool { return !src.Pin().Missing })
	require.Equal(t, rotated.Certificates[0].Raw, served(t, src).Certificates[0].Raw)
}
