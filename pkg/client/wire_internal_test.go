package client

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetherproject/tether/pkg/api"
)

// TestReadsGoldenAnswers: the client reads every answer of the contract as
// tetherd writes it (the golden files pinned by pkg/api).
func TestReadsGoldenAnswers(t *testing.T) {
	golden := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wire", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	answer := func(status int, body []byte) *http.Response {
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
	}
	var lr api.LoginResponse
	if err := decode(answer(http.StatusCreated, golden("login")), &lr); err != nil || lr.Token == "" || lr.Session.SessionID == "" {
		t.Fatalf("login: %v %+v", err, lr)
	}
	var sr api.SessionsResponse
	if err := decode(answer(http.StatusOK, golden("sessions")), &sr); err != nil || len(sr.Sessions) != 1 || sr.Sessions[0].CNF.X5TS256 == "" {
		t.Fatalf("sessions: %v %+v", err, sr)
	}
	var ir api.IntrospectResponse
	if err := decode(answer(http.StatusOK, golden("introspect-active")), &ir); err != nil || !ir.Active || ir.Session == nil {
		t.Fatalf("introspect: %v %+v", err, ir)
	}
	err := decode(answer(http.StatusUnauthorized, golden("error")), &lr)
	var e *Error
	if !errors.As(err, &e) || e.Code != api.CodeCertificateRotated || e.Status != http.StatusUnauthorized || e.Message == "" {
		t.Fatalf("error: %#v", err)
	}
}
