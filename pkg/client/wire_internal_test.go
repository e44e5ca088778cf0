package client

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// TestReadsGoldenAnswers: the client reads every answer of the contract as
// tetherd writes it (the golden files pinned by pkg/api).
func TestReadsGoldenAnswers(t *testing.T) {
	golden := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wire", name+".json"))
		require.NoError(t, err)
		return b
	}
	answer := func(status int, body []byte) *http.Response {
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
	}
	var lr api.LoginResponse
	require.NoError(t, decode(answer(http.StatusCreated, golden("login")), &lr))
	require.NotEmpty(t, lr.Token)
	require.NotEmpty(t, lr.Session.SessionID)
	var sr api.SessionsResponse
	require.NoError(t, decode(answer(http.StatusOK, golden("sessions")), &sr))
	require.Len(t, sr.Sessions, 1)
	require.NotEmpty(t, sr.Sessions[0].CNF.X5TS256)
	var ir api.IntrospectResponse
	require.NoError(t, decode(answer(http.StatusOK, golden("introspect-active")), &ir))
	require.True(t, ir.Active)
	require.NotNil(t, ir.Session)
	err := decode(answer(http.StatusUnauthorized, golden("error")), &lr)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, api.CodeCertificateRotated, e.Code)
	require.Equal(t, http.StatusUnauthorized, e.Status)
	require.NotEmpty(t, e.Message)
}
