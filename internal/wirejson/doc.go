// Package wirejson encodes the API objects that tetherd answers on its hot
// paths (a session, a login) without reflection. Its output is, byte for
// byte, what encoding/json writes for the same value: the golden files of
// testdata/wire pin that JSON, and this package's tests compare the two
// encoders on tables and under fuzzing. Anything outside the common case (a
// string needing escapes, a time encoding/json refuses) is handed to
// encoding/json, or refused so that the caller uses encoding/json itself.
package wirejson
