package api_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestWireGolden pins the JSON of every API object: a change here is a
// change of the contract. One subtest per file in the project's
// testdata/wire/, which pkg/client's tests read too.
func TestWireGolden(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := api.Session{
		SessionID: "dyo3ql73cyrlb6vmvtpeexty3q", SPIFFEID: "spiffe://example.org/admin/alice",
		CNF:       api.CNF{X5TS256: "aUfhS1eptcdumpXPZjdfdbjY3gKmPDbECSonnqyfxOE"},
		CreatedAt: at, LastUsedAt: at.Add(time.Minute), ExpiresAt: at.Add(8 * time.Hour), IdleExpiresAt: at.Add(16 * time.Minute),
		Roles: []string{"restore"}, State: api.StatePending,
		Approvals:       []api.Approval{{SPIFFEID: "spiffe://example.org/admin/bob", At: at.Add(2 * time.Minute)}},
		AuthenticatedAt: at,
	}
	for name, v := range map[string]any{
		"login":               api.LoginResponse{Token: "header.payload.signature", Session: s},
		"session":             api.SessionResponse{Session: s},
		"sessions":            api.SessionsResponse{Sessions: []api.Session{s}},
		"sessions-empty":      api.SessionsResponse{Sessions: []api.Session{}},
		"revoke":              api.RevokeResponse{Revoked: 2},
		"introspect-request":  api.IntrospectRequest{Token: "header.payload.signature", CNF: s.CNF},
		"introspect-active":   api.IntrospectResponse{Active: true, Session: &s},
		"introspect-inactive": api.IntrospectResponse{Active: false},
		"login-request":       api.LoginRequest{Roles: []string{"restore"}},
		"error":               api.ErrorResponse{Error: &api.Error{Code: api.CodeCertificateRotated, Message: "rebind or log in again"}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			path := filepath.Join("..", "..", "testdata", "wire", name+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o600))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
}

func TestCodes(t *testing.T) {
	for code, status := range map[api.Code]int{
		api.CodeBadRequest: 400, api.CodeMissingToken: 401, api.CodeInvalidToken: 401,
		api.CodeSessionEnded: 401, api.CodeCertificateRotated: 401, api.CodeNotAdmin: 403,
		api.CodeForbidden: 403, api.CodeNotFound: 404, api.CodeMethodNotAllowed: 405,
		api.CodePayloadTooLarge: 413, api.CodeSessionLimit: 429, api.CodeRateLimited: 429,
		api.CodeHeadersTooLarge: 431, api.CodeUnavailable: 503,
		api.CodeInternal: 500, api.Code("unknown"): 500,
	} {
		require.Equal(t, status, code.Status(), code)
	}
	e := &api.Error{Code: api.CodeSessionEnded, Message: "x"}
	require.ErrorIs(t, e, &api.Error{Code: api.CodeSessionEnded})
	require.NotErrorIs(t, e, &api.Error{Code: api.CodeInvalidToken})
	require.Equal(t, "session_ended: x", e.Error())
	require.Same(t, e, e.APIError())
	require.Equal(t, `Bearer realm="tether", error="invalid_request"`, api.WWWAuthenticate(api.CodeMissingToken))
	require.Equal(t, `Bearer realm="tether", error="invalid_token"`, api.WWWAuthenticate(api.CodeSessionEnded))
}
