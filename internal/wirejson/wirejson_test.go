package wirejson_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/wirejson"
	"github.com/tetherproject/tether/pkg/api"
)

var at = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// golden is the session of testdata/wire/session.json, the file pkg/api's
// TestWireGolden pins: read from it, so the session is written down once.
func golden(t testing.TB) api.Session {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wire", "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r api.SessionResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Session
}

// same checks that wirejson writes what encoding/json writes for v, or
// reports !ok exactly when encoding/json fails.
func same(t *testing.T, v any) {
	t.Helper()
	want, err := json.Marshal(v)
	var got []byte
	var ok bool
	switch v := v.(type) {
	case *api.SessionResponse:
		got, ok = wirejson.AppendSessionResponse([]byte("prefix"), v)
	case *api.LoginResponse:
		got, ok = wirejson.AppendLoginResponse([]byte("prefix"), v)
	default:
		t.Fatalf("no encoder for %T", v)
	}
	require.Equal(t, err == nil, ok, "encoding/json: %v", err)
	if ok {
		require.Equal(t, "prefix"+string(want), string(got))
	}
}

// TestGoldenFiles: the files of testdata/wire, indented as pkg/api writes
// them, are what wirejson writes.
func TestGoldenFiles(t *testing.T) {
	s := golden(t)
	for name, v := range map[string]any{
		"session": &api.SessionResponse{Session: s},
		"login":   &api.LoginResponse{Token: "header.payload.signature", Session: s},
	} {
		t.Run(name, func(t *testing.T) {
			var got []byte
			switch v := v.(type) {
			case *api.SessionResponse:
				got, _ = wirejson.AppendSessionResponse(nil, v)
			case *api.LoginResponse:
				got, _ = wirejson.AppendLoginResponse(nil, v)
			}
			want, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wire", name+".json"))
			require.NoError(t, err)
			var compact bytes.Buffer
			require.NoError(t, json.Compact(&compact, want))
			require.Equal(t, compact.String(), string(got))
			same(t, v)
		})
	}
}

// TestTable: the cases where a hand-written encoder goes wrong.
func TestTable(t *testing.T) {
	zone := func(name string, secs int) *time.Location { return time.FixedZone(name, secs) }
	for name, edit := range map[string]func(*api.Session){
		"zero":                 func(s *api.Session) { *s = api.Session{} },
		"nil roles, approvals": func(s *api.Session) { s.Roles, s.Approvals = nil, nil },
		"empty roles":          func(s *api.Session) { s.Roles, s.Approvals = []string{}, []api.Approval{} },
		"several": func(s *api.Session) {
			s.Roles = []string{"a", "b", "c"}
			s.Approvals = append(s.Approvals, s.Approvals[0])
		},
		"html":                   func(s *api.Session) { s.SessionID = `<a href="x">&</a>` },
		"controls":               func(s *api.Session) { s.SPIFFEID = "a\x00b\tc\nd\re\x1f\\" },
		"unicode":                func(s *api.Session) { s.State = "été \u2028 \u2029 日本" },
		"invalid utf-8":          func(s *api.Session) { s.CNF.X5TS256 = "a\xffb\xc3" },
		"del":                    func(s *api.Session) { s.Roles = []string{"\x7f"} },
		"nanoseconds":            func(s *api.Session) { s.LastUsedAt = at.Add(123456789) },
		"trailing zeros":         func(s *api.Session) { s.LastUsedAt = at.Add(120 * time.Millisecond) },
		"monotonic":              func(s *api.Session) { s.CreatedAt = time.Now() },
		"local zone":             func(s *api.Session) { s.ExpiresAt = at.In(zone("X", 5*3600+30*60)) },
		"negative zone":          func(s *api.Session) { s.ExpiresAt = at.In(zone("Y", -(9*3600 + 45*60))) },
		"zone with seconds":      func(s *api.Session) { s.ExpiresAt = at.In(zone("S", 3600+7)) },
		"zone of 24 hours":       func(s *api.Session) { s.IdleExpiresAt = at.In(zone("D", 24*3600)) },
		"zone of 23:59":          func(s *api.Session) { s.IdleExpiresAt = at.In(zone("E", 23*3600+59*60)) },
		"year 10000":             func(s *api.Session) { s.AuthenticatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year -1":                func(s *api.Session) { s.AuthenticatedAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year 0":                 func(s *api.Session) { s.AuthenticatedAt = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year 9999":              func(s *api.Session) { s.AuthenticatedAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) },
		"approval in year 10000": func(s *api.Session) { s.Approvals[0].At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		t.Run(name, func(t *testing.T) {
			s := golden(t)
			edit(&s)
			same(t, &api.SessionResponse{Session: s})
			same(t, &api.LoginResponse{Token: "t<o>k\u2028", Session: s})
		})
	}
}

// TestFields: the encoder knows every field of the API objects it writes;
// a field added to api.Session fails here until it is encoded.
func TestFields(t *testing.T) {
	var names []string
	for f := range reflect.TypeFor[api.Session]().Fields() {
		names = append(names, f.Tag.Get("json"))
	}
	require.Equal(t, []string{"session_id", "spiffe_id", "cnf", "created_at", "last_used_at", "expires_at",
		"idle_expires_at", "roles", "state", "approvals", "authenticated_at"}, names)
	require.Equal(t, 2, reflect.TypeFor[api.LoginResponse]().NumField())
	require.Equal(t, 1, reflect.TypeFor[api.SessionResponse]().NumField())
	require.Equal(t, 1, reflect.TypeFor[api.CNF]().NumField())
	require.Equal(t, 2, reflect.TypeFor[api.Approval]().NumField())
}

// FuzzEquivalence: for any strings, roles, approvals and times,
// wirejson writes what encoding/json writes.
func FuzzEquivalence(f *testing.F) {
	f.Add("dyo3ql73cyrlb6vmvtpeexty3q", "spiffe://example.org/admin/alice", "restore", "a.b.c", int64(0), int64(1), 0, uint8(1))
	f.Add("<&>", "\u2028\xff", "", "\x00", int64(-1e18), int64(253402300800), 3600+1, uint8(0))
	f.Fuzz(func(t *testing.T, id, spiffeID, role, token string, sec, nsec int64, offset int, n uint8) {
		t0 := time.Unix(sec, nsec).In(time.FixedZone("", offset))
		s := api.Session{
			SessionID: id, SPIFFEID: spiffeID, CNF: api.CNF{X5TS256: token},
			CreatedAt: t0, LastUsedAt: t0.Add(time.Duration(nsec)), ExpiresAt: t0.UTC(), IdleExpiresAt: t0.Add(-time.Duration(sec)),
			State: role, AuthenticatedAt: time.Unix(nsec, sec),
		}
		if n%3 > 0 {
			s.Roles = make([]string, n%5)
			for i := range s.Roles {
				s.Roles[i] = role + id[:min(i, len(id))]
			}
		}
		if n%2 > 0 {
			s.Approvals = make([]api.Approval, n%4)
			for i := range s.Approvals {
				s.Approvals[i] = api.Approval{SPIFFEID: spiffeID[:min(i, len(spiffeID))], At: t0.Add(time.Duration(i) * time.Hour)}
			}
		}
		same(t, &api.SessionResponse{Session: s})
		same(t, &api.LoginResponse{Token: token, Session: s})
	})
}
