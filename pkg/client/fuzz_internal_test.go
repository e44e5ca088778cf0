package client

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// FuzzAnswers feeds tetherd's answers, whatever their status, headers and
// body, to the client's readers: they must never panic, every non-2xx must
// become an *Error with a code and its status, and a 2xx must either
// decode or fail with an error.
func FuzzAnswers(f *testing.F) {
	f.Add(401, "", []byte(`{"error":{"code":"certificate_rotated","message":"rebind"}}`))
	f.Add(429, "5", []byte(`{"error":{"code":"rate_limited","message":"later"}}`))
	f.Add(500, "", []byte(`<html>proxy error</html>`))
	f.Add(200, "", []byte(`{"token":"a.b.c","session":{"session_id":"x","cnf":{"x5t#S256":"y"},"created_at":"2026-11-25T12:00:00Z"}}`))
	f.Add(200, "", []byte(`{"sessions":[{"session_id":1}]}`))
	f.Add(201, "", []byte(`{"token":`))
	f.Add(404, "-1", []byte(`{"error":null}`))
	f.Add(403, "99999999999999999999", []byte(`{"error":{"code":""}}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		if status < 100 || status > 999 {
			status = 200 + (status%800+800)%800
		}
		mk := func() *http.Response {
			h := http.Header{}
			if retryAfter != "" {
				h.Set("Retry-After", retryAfter)
			}
			return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: h, Body: io.NopCloser(bytes.NewReader(body))}
		}
		var lr api.LoginResponse
		err := decode(mk(), &lr)
		if status/100 != 2 {
			e, ok := err.(*Error)
			require.True(t, ok, "status %d: got %#v", status, err)
			require.NotEmpty(t, e.Code, "status %d", status)
			require.Equal(t, status, e.Status)
			require.GreaterOrEqual(t, e.RetryAfter, time.Duration(0))
		}
		pe := peekError(mk())
		require.NotNil(t, pe)
		require.NotEmpty(t, pe.Code)
	})
}
