// Package render is the single path by which tether's HTTP handlers answer:
// JSON bodies, and errors in the contract's format. It knows no domain type:
// an error says how it is answered by implementing APIError() *api.Error
// (*api.Error itself, session's refusals), and may name a Retry-After by
// implementing RetryDelay() time.Duration. Any other error is a bug: it is
// logged with an error ID that the public 500 answer repeats, and never
// reaches the wire.
package render

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/tetherproject/tether/pkg/api"
)

// JSON writes v with the status.
func JSON(w http.ResponseWriter, status int, v any) {
	setHeaders(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Encoded writes body with the status and the headers of JSON: body must be
// what JSON would write, json.Encoder's final newline included (a handler's
// own encoder of a hot answer, such as internal/wirejson, makes it).
func Encoded(w http.ResponseWriter, status int, body []byte) {
	setHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// setHeaders sets the headers of every JSON answer. The keys are written
// canonical, as Header.Set would make them, and both values share one
// allocation: this runs on every request.
func setHeaders(h http.Header) {
	v := &[2]string{"application/json", "no-store"}
	h["Content-Type"] = v[0:1:1]
	h["Cache-Control"] = v[1:2:2]
}

// answerable is an error that says how it is answered.
type answerable interface {
	error
	APIError() *api.Error
}

// challenger is a 401 with its own WWW-Authenticate (RFC 9470's step-up).
type challenger interface {
	WWWAuthenticate() string
}

// retryable is an error that asks the client to wait before retrying.
type retryable interface {
	RetryDelay() time.Duration
}

// Error answers err: the *api.Error it says it is, or a 500 internal logged
// with an error ID.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var a answerable
	if !errors.As(err, &a) {
		id := errorID()
		if log != nil {
			log.LogAttrs(r.Context(), slog.LevelError, "request.failed",
				slog.String("error_id", id), slog.String("error", err.Error()),
				slog.String("method", r.Method), slog.String("path", r.URL.Path))
		}
		JSON(w, http.StatusInternalServerError, api.ErrorResponse{Error: &api.Error{Code: api.CodeInternal, Message: "internal error (error ID " + id + ")"}})
		return
	}
	e := a.APIError()
	var rt retryable
	if errors.As(err, &rt) {
		if d := rt.RetryDelay(); d > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(max(int((d+time.Second-1)/time.Second), 1)))
		}
	}
	status := e.Code.Status()
	if status == http.StatusUnauthorized {
		challenge := api.WWWAuthenticate(e.Code)
		var ch challenger
		if errors.As(err, &ch) {
			challenge = ch.WWWAuthenticate()
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	JSON(w, status, api.ErrorResponse{Error: &api.Error{Code: e.Code, Message: e.Message}})
}

func errorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
