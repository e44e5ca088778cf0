package wirejson

import (
	"encoding/json"
	"time"

	"github.com/tetherproject/tether/pkg/api"
)

// AppendSessionResponse appends json.Marshal(v) to b. ok is false, and b is
// to be ignored, when encoding/json would fail: then the caller encodes v
// with encoding/json, which reports the error.
func AppendSessionResponse(b []byte, v *api.SessionResponse) ([]byte, bool) {
	b = append(b, `{"session":`...)
	b, ok := AppendSession(b, &v.Session)
	return append(b, '}'), ok
}

// AppendLoginResponse appends json.Marshal(v) to b; ok as for
// AppendSessionResponse.
func AppendLoginResponse(b []byte, v *api.LoginResponse) ([]byte, bool) {
	b = append(b, `{"token":`...)
	b = appendString(b, v.Token)
	b = append(b, `,"session":`...)
	b, ok := AppendSession(b, &v.Session)
	return append(b, '}'), ok
}

// AppendSession appends json.Marshal(s) to b; ok as for
// AppendSessionResponse.
func AppendSession(b []byte, s *api.Session) ([]byte, bool) {
	ok := true
	b = append(b, `{"session_id":`...)
	b = appendString(b, s.SessionID)
	b = append(b, `,"spiffe_id":`...)
	b = appendString(b, s.SPIFFEID)
	b = append(b, `,"cnf":{"x5t#S256":`...)
	b = appendString(b, s.CNF.X5TS256)
	b = append(b, `},"created_at":`...)
	b = appendTime(b, s.CreatedAt, &ok)
	b = append(b, `,"last_used_at":`...)
	b = appendTime(b, s.LastUsedAt, &ok)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, s.ExpiresAt, &ok)
	b = append(b, `,"idle_expires_at":`...)
	b = appendTime(b, s.IdleExpiresAt, &ok)
	b = append(b, `,"roles":`...)
	if s.Roles == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range s.Roles {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, `,"state":`...)
	b = appendString(b, s.State)
	b = append(b, `,"approvals":`...)
	if s.Approvals == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range s.Approvals {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"spiffe_id":`...)
			b = appendString(b, s.Approvals[i].SPIFFEID)
			b = append(b, `,"at":`...)
			b = appendTime(b, s.Approvals[i].At, &ok)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"authenticated_at":`...)
	b = appendTime(b, s.AuthenticatedAt, &ok)
	return append(b, '}'), ok
}

// appendString appends s as encoding/json quotes it. Strings of printable
// ASCII that need no escape (IDs, fingerprints, SPIFFE IDs, tokens) are
// copied; any other is handed to encoding/json, which escapes it (HTML
// characters, control characters, U+2028, U+2029, invalid UTF-8).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plain are the bytes encoding/json copies as they are into a string
// (escaping HTML, as json.Marshal and json.Encoder do by default).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendTime appends t as time.Time.MarshalJSON does: RFC 3339 with
// nanoseconds, quoted. MarshalJSON refuses what RFC 3339 cannot say (a year
// outside [0,9999], a zone offset of 24 hours or more, or with seconds),
// with the same checks as here; then *ok turns false.
func appendTime(b []byte, t time.Time, ok *bool) []byte {
	b = append(b, '"')
	n := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	switch {
	case b[n+len("9999")] != '-': // the year is exactly 4 digits wide
		*ok = false
	case b[len(b)-1] != 'Z':
		c := b[len(b)-len("Z07:00")]
		if '0' <= c && c <= '9' || 10*(b[len(b)-5]-'0')+(b[len(b)-4]-'0') >= 24 {
			*ok = false
		}
	}
	return append(b, '"')
}
