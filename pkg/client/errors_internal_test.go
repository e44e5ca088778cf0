package client

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

func TestReadErrorRetryAfter(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("Retry-After", "3")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.WriteString(`{"error":{"code":"rate_limited","message":"too many logins: retry later"}}`)
	e := readError(w.Result())
	require.Equal(t, api.CodeRateLimited, e.Code)
	require.Equal(t, http.StatusTooManyRequests, e.Status)
	require.Equal(t, 3*time.Second, e.RetryAfter)
}
