package wirejson

import (
	"encoding/json"
	"math/bits"
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
	b = AppendString(b, v.Token)
	b = append(b, `,"session":`...)
	b, ok := AppendSession(b, &v.Session)
	return append(b, '}'), ok
}

// AppendSession appends json.Marshal(s) to b; ok as for
// AppendSessionResponse.
func AppendSession(b []byte, s *api.Session) ([]byte, bool) {
	ok := true
	b = append(b, `{"session_id":`...)
	b = AppendString(b, s.SessionID)
	b = append(b, `,"spiffe_id":`...)
	b = AppendString(b, s.SPIFFEID)
	b = append(b, `,"cnf":{"x5t#S256":`...)
	b = AppendString(b, s.CNF.X5TS256)
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
			b = AppendString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, `,"state":`...)
	b = AppendString(b, s.State)
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
			b = AppendString(b, s.Approvals[i].SPIFFEID)
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

// AppendString appends s as encoding/json quotes it (json.Marshal(s)).
// Strings of printable ASCII that need no escape (IDs, fingerprints, SPIFFE
// IDs, tokens) are copied; any other is handed to encoding/json, which escapes it (HTML
// characters, control characters, U+2028, U+2029, invalid UTF-8).
func AppendString(b []byte, s string) []byte {
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
//
// The times of a session are UTC (session.Info's are made with .UTC()):
// those of years 0000 to 9999 are written by appendUTC, without
// time.Time.AppendFormat's general layout machinery. Any other time (another
// Location, even one of zero offset; a year out of range) takes
// AppendFormat's path and its checks.
func appendTime(b []byte, t time.Time, ok *bool) []byte {
	if t.Location() == time.UTC {
		if sec := t.Unix(); minUTC <= sec && sec <= maxUTC {
			return appendUTC(b, sec, t.Nanosecond())
		}
	}
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

// The Unix seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the
// UTC times appendUTC writes.
const (
	minUTC = -62167219200
	maxUTC = 253402300799
)

// appendUTC appends, quoted, the UTC time of sec Unix seconds and nsec
// nanoseconds (sec in [minUTC, maxUTC], nsec in [0, 1e9)) as
// AppendFormat(b, time.RFC3339Nano) writes it: YYYY-MM-DDThh:mm:ss, a dot
// and the nanoseconds with their trailing zeros trimmed (neither when nsec
// is 0), and Z.
func appendUTC(b []byte, sec int64, nsec int) []byte {
	// The date is computed as package time computes it (Neri and Schneider,
	// "Euclidean affine functions and their application to calendar
	// algorithms"), on days counted from -0400-03-01: a year that starts in
	// March ends with its leap day, and the count, one 400-year era before
	// year 0's March 1 (60 days after 0000-01-01), is never negative.
	since0 := uint64(sec - minUTC) //nolint:gosec // G115: sec >= minUTC, so the difference is not negative
	days := since0/86400 - 60 + 146097
	d := 4*days + 3
	century := d / 146097
	cyear, lo := bits.Mul32(2939745, uint32(d%146097)|3) // year of the century
	yday := lo / 2939745 / 4                             // day of the year from March 1
	md := 2141*yday + 197913
	month, day := uint64(md>>16), uint64(1+(md&0xffff)/2141) // month from 3 (March) to 14 (February)
	year := century*100 + uint64(cyear)
	if month > 12 {
		month -= 12
		year++
	}
	year -= 400
	tod := since0 % 86400

	var a [len(`"2006-01-02T15:04:05.999999999Z"`)]byte
	a[0] = '"'
	put2(a[1:], year/100)
	put2(a[3:], year%100)
	a[5] = '-'
	put2(a[6:], month)
	a[8] = '-'
	put2(a[9:], day)
	a[11] = 'T'
	put2(a[12:], tod/3600)
	a[14] = ':'
	put2(a[15:], tod/60%60)
	a[17] = ':'
	put2(a[18:], tod%60)
	n := len(`"2006-01-02T15:04:05`)
	if nsec != 0 {
		f := uint64(nsec) //nolint:gosec // G115: nsec is in [0, 1e9)
		a[20] = '.'
		put2(a[21:], f/1e7)
		put2(a[23:], f/1e5%100)
		put2(a[25:], f/1e3%100)
		put2(a[27:], f/10%100)
		a[29] = byte('0' + f%10)
		n = 30
		for a[n-1] == '0' { // trailing zeros trimmed; nsec > 0 keeps a digit
			n--
		}
	}
	a[n], a[n+1] = 'Z', '"'
	return append(b, a[:n+2]...)
}

// put2 writes v, in [0, 99], as two decimal digits.
func put2(b []byte, v uint64) {
	_ = b[1]
	b[0], b[1] = digits[2*v], digits[2*v+1]
}

// digits holds the two decimal digits of each number from 0 to 99.
const digits = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"
