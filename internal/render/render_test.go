package render_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/render"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

func TestErrorInternal(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	w := httptest.NewRecorder()
	render.Error(w, httptest.NewRequest(http.MethodGet, "/v1/x", nil), log, errors.New("db: secret detail at /var/lib/x"))

	require.Equal(t, http.StatusInternalServerError, w.Code)
	var er api.ErrorResponse
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &er))
	require.Equal(t, api.CodeInternal, er.Error.Code)
	require.NotContains(t, w.Body.String(), "secret detail", "the cause never reaches the wire")

	var ev map[string]any
	require.NoError(t, json.Unmarshal(logBuf.Bytes(), &ev))
	id, _ := ev["error_id"].(string)
	require.Len(t, id, 16)
	require.Contains(t, er.Error.Message, id, "the message repeats the logged error ID")
	require.Contains(t, ev["error"], "secret detail")
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   api.Code
		header string
	}{
		{&session.Error{Code: api.CodeSessionEnded, Reason: session.ReasonIdle}, 401, api.CodeSessionEnded, `Bearer realm="tether", error="invalid_token"`},
		{&session.Error{Code: api.CodeInvalidToken, Reason: session.ReasonUnknown}, 401, api.CodeInvalidToken, `Bearer realm="tether", error="invalid_token"`},
		{&api.Error{Code: api.CodeMissingToken}, 401, api.CodeMissingToken, `Bearer realm="tether", error="invalid_request"`},
		{&session.Error{Code: api.CodeRateLimited, Reason: session.ReasonRate, RetryAfter: 1500 * time.Millisecond}, 429, api.CodeRateLimited, ""},
		{&session.Error{Code: api.CodeSessionLimit, Reason: session.ReasonLimitTotal}, 429, api.CodeSessionLimit, ""},
	} {
		t.Run(string(tc.code), func(t *testing.T) {
			w := httptest.NewRecorder()
			render.Error(w, httptest.NewRequest(http.MethodGet, "/", nil), nil, tc.err)
			require.Equal(t, tc.status, w.Code)
			require.Equal(t, tc.header, w.Header().Get("WWW-Authenticate"))
			require.Contains(t, w.Body.String(), `"code":"`+string(tc.code)+`"`)
			// Internal reasons stay internal.
			require.False(t, strings.Contains(w.Body.String(), "idle") || strings.Contains(w.Body.String(), "unknown_session"))
			if tc.code == api.CodeRateLimited {
				require.Equal(t, "2", w.Header().Get("Retry-After"))
			}
		})
	}
}
