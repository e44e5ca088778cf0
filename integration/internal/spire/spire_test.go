package spire

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEntryIDFromJSON(t *testing.T) {
	for _, tc := range []struct {
		name, out, id, err string
	}{
		{name: "ok", out: `{"results":[{"status":{"code":0,"message":"OK"},"entry":{"id":"e-1","spiffe_id":{}}}]}`, id: "e-1"},
		{name: "fail/status", out: `{"results":[{"status":{"code":6,"message":"similar entry already exists"},"entry":{}}]}`, err: "similar entry"},
		{name: "fail/no-id", out: `{"results":[{"status":{"code":0},"entry":{}}]}`, err: "no entry ID"},
		{name: "fail/not-json", out: `Entry ID : e-1`, err: "unexpected output"},
		{name: "fail/two-results", out: `{"results":[{},{}]}`, err: "unexpected output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := entryIDFromJSON([]byte(tc.out))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || id != tc.id {
				t.Fatalf("got %q, %v; want %q", id, err, tc.id)
			}
		})
	}
}

func TestEntryArgs(t *testing.T) {
	got := entryArgs(Entry{
		SPIFFEID:    "spiffe://example.org/admin/alice",
		ParentID:    "spiffe://example.org/agent",
		Selectors:   []string{"unix:uid:1001", "unix:gid:1001"},
		X509SVIDTTL: 20 * time.Second,
		Hint:        "alice",
	})
	want := []string{
		"-parentID", "spiffe://example.org/agent", "-spiffeID", "spiffe://example.org/admin/alice",
		"-selector", "unix:uid:1001", "-selector", "unix:gid:1001", "-x509SVIDTTL", "20", "-hint", "alice",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
