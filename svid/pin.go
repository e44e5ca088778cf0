package svid

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrNotPinned is the error (wrapped) of an identity source that was handed
// SVIDs, none of which carries the pinned SPIFFE ID.
var ErrNotPinned = errors.New("svid: no SVID with the pinned SPIFFE ID")

// PinState is what an identity source knows about its pinned SPIFFE ID.
//
// A source serves exactly one identity. The pin is the ID it was configured
// with (tetherd's --spiffe-id), or else the ID of the first SVID it received.
// Among several SVIDs (a workload matching several registration entries
// gets one per entry, in no fixed order) it serves the one with the pinned
// ID. When the latest SVIDs it was handed carry no such ID (the entry was
// removed, or the SVID files now hold another identity), it keeps serving
// the last SVID it had with the pinned ID, never another, and Missing is
// set until the pinned ID is back.
type PinState struct {
	// ID is the pinned SPIFFE ID; zero before the first SVID when none
	// was configured.
	ID spiffeid.ID
	// Configured says the ID was given, not taken from the first SVID.
	Configured bool
	// Offered are the SPIFFE IDs of the latest SVIDs the source was handed,
	// in their order.
	Offered []spiffeid.ID
	// Missing says none of Offered is ID.
	Missing bool
}

// Err is nil unless Missing; then it wraps ErrNotPinned and names the
// pinned ID and the offered ones.
func (p PinState) Err() error {
	if !p.Missing {
		return nil
	}
	return fmt.Errorf("%w: want %s, offered %s", ErrNotPinned, p.ID, idList(p.Offered))
}

// Pinner is an identity source with a pinned SPIFFE ID.
type Pinner interface {
	Pin() PinState
}

func idList(ids []spiffeid.ID) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}

// pick returns the SVID of svids with ID id: the one that expires last if
// several do (two entries with the same SPIFFE ID), nil if none.
func pick(svids []*x509svid.SVID, id spiffeid.ID) *x509svid.SVID {
	var match *x509svid.SVID
	for _, s := range svids {
		if s == nil || s.ID != id || len(s.Certificates) == 0 {
			continue
		}
		if match == nil || s.Certificates[0].NotAfter.After(match.Certificates[0].NotAfter) {
			match = s
		}
	}
	return match
}

// ids are the SPIFFE IDs of svids.
func ids(svids []*x509svid.SVID) []spiffeid.ID {
	out := make([]spiffeid.ID, 0, len(svids))
	for _, s := range svids {
		if s != nil {
			out = append(out, s.ID)
		}
	}
	return out
}
