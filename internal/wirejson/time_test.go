package wirejson

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// checkTime fails unless appendTime writes t as encoding/json does, or
// reports !ok exactly when encoding/json refuses t.
func checkTime(t *testing.T, at time.Time) {
	t.Helper()
	want, err := json.Marshal(at)
	ok := true
	got := appendTime([]byte("x"), at, &ok)
	if ok != (err == nil) {
		t.Fatalf("%#v: ok %v, encoding/json: %v", at, ok, err)
	}
	if ok && string(got) != "x"+string(want) {
		t.Fatalf("%#v: got %s, want x%s", at, got, want)
	}
}

// TestAppendTimeUTC: the UTC path writes exactly what
// time.Format(time.RFC3339Nano) writes, quoted, at the edges of every field
// and on a spread of random times over the years 0000 to 9999.
func TestAppendTimeUTC(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	var times []time.Time
	for _, d := range []time.Time{
		day(0, 1, 1), day(0, 2, 29), day(0, 3, 1), day(0, 12, 31),
		day(1, 1, 1), day(1, 12, 31), day(99, 12, 31), day(100, 3, 1),
		day(1600, 2, 29), day(1700, 2, 28), day(1700, 3, 1), day(1900, 2, 28), day(1900, 3, 1),
		day(1969, 12, 31), day(1970, 1, 1), day(2000, 2, 29), day(2000, 3, 1),
		day(2024, 2, 29), day(2026, 11, 25), day(2100, 2, 28), day(2100, 3, 1),
		day(9999, 1, 1), day(9999, 12, 31),
	} {
		for _, clock := range []time.Duration{0, time.Second, time.Minute, time.Hour, 12 * time.Hour,
			24*time.Hour - time.Second, 23*time.Hour + 59*time.Minute} {
			for _, ns := range []int{0, 1, 9, 10, 100, 999, 1000, 123456789, 100000000, 120000000,
				999999999, 500000000, 10000001, 1000000} {
				times = append(times, d.Add(clock+time.Duration(ns)))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // G404: reproducible test times, not a secret
	for range 100000 {
		times = append(times, time.Unix(minUTC+rng.Int64N(maxUTC-minUTC+1), rng.Int64N(1e9)).UTC())
	}
	for _, at := range times {
		if at.Location() != time.UTC {
			t.Fatalf("%v is not in time.UTC", at)
		}
		want := `"` + at.Format(time.RFC3339Nano) + `"`
		ok := true
		if got := string(appendTime(nil, at, &ok)); got != want || !ok {
			t.Fatalf("%s: got %s (ok %v), want %s", want, got, ok, want)
		}
		checkTime(t, at)
	}
}

// TestAppendTimeOther: the times the UTC path does not take (out of its
// years, other locations, a zero offset that is not time.UTC, a monotonic
// reading) are written, or refused, as encoding/json does.
func TestAppendTimeOther(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123000000, time.UTC)
	for _, v := range []time.Time{
		{}, // the zero time: year 1, UTC
		time.Unix(minUTC, 0).UTC(), time.Unix(minUTC-1, 999999999).UTC(),
		time.Unix(maxUTC, 999999999).UTC(), time.Unix(maxUTC+1, 0).UTC(),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		at.In(time.FixedZone("UTC", 0)), at.In(time.FixedZone("", 0)), at.In(time.Local),
		at.In(time.FixedZone("X", 5*3600+30*60)), at.In(time.FixedZone("Y", -(9*3600 + 45*60))),
		at.In(time.FixedZone("S", 3600+7)), at.In(time.FixedZone("D", 24*3600)),
		time.Now(), time.Now().UTC(),
	} {
		checkTime(t, v)
	}
}

// FuzzAppendTime: for any UTC time, appendTime writes what encoding/json
// writes (or refuses what it refuses).
func FuzzAppendTime(f *testing.F) {
	for _, s := range [][2]int64{
		{0, 0}, {0, 1}, {1764072000, 999999999}, {1764072000, 100000000}, {minUTC, 0}, {maxUTC, 999999999},
		{minUTC - 1, 0}, {maxUTC + 1, 0}, {951782400, 0}, {-62135596800, 0}, {-1, 1e9 - 1}, {1 << 62, -1},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		checkTime(t, time.Unix(sec, nsec).UTC())
	})
}

// BenchmarkAppendTime is one session time, as the API writes five of them
// in each session answer.
func BenchmarkAppendTime(b *testing.B) {
	at := time.Unix(1764072000, 123456789).UTC()
	buf := make([]byte, 0, 64)
	ok := true
	for b.Loop() {
		buf = appendTime(buf[:0], at, &ok)
	}
}
