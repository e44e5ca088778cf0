// Package render is the single path by which tether's HTTP handlers answer:
// JSON bodies, and errors mapped to the contract's codes. Internal causes are
// logged with an error ID that the public message repeats; they never reach
// the wire.
package render

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// JSON writes v with the status.
func JSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Public messages of the session refusals: the same for every reason, so the
// answer tells a caller no more than the code.
var messages = map[api.Code]string{
	api.CodeMissingToken:       "no bearer token: send Authorization: Bearer TOKEN",
	api.CodeInvalidToken:       "the token is not valid for this caller",
	api.CodeSessionEnded:       "the session has ended: log in again",
	api.CodeCertificateRotated: "the session is bound to another certificate of this identity: rebind or log in again",
	api.CodeSessionLimit:       "too many live sessions",
	api.CodeRateLimited:        "too many logins: retry later",
	api.CodeNotFound:           "no such session",
	api.CodeBadRequest:         "bad request",
}

// Error answers err. An *api.Error goes out as it is; a *session.Error is
// mapped to its code; anything else is a bug: 500 internal, logged with an ID.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var (
		apiErr  *api.Error
		sessErr *session.Error
	)
	switch {
	case errors.As(err, &apiErr):
	case errors.As(err, &sessErr):
		apiErr = &api.Error{Code: sessErr.Code, Message: messages[sessErr.Code]}
		if sessErr.Reason == session.ReasonSameLeaf {
			apiErr.Message = "the session is already bound to this certificate: nothing to rebind"
		}
		if sessErr.RetryAfter > 0 {
			secs := int((sessErr.RetryAfter + 999_999_999) / 1_000_000_000)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		}
	default:
		id := errorID()
		if log != nil {
			log.LogAttrs(r.Context(), slog.LevelError, "request.failed",
				slog.String("error_id", id), slog.String("error", err.Error()),
				slog.String("method", r.Method), slog.String("path", r.URL.Path))
		}
		apiErr = &api.Error{Code: api.CodeInternal, Message: "internal error (error ID " + id + ")"}
	}
	if apiErr.Code == api.CodeInternal && apiErr.Cause != nil && log != nil {
		log.LogAttrs(r.Context(), slog.LevelError, "request.failed",
			slog.String("error", apiErr.Cause.Error()), slog.String("path", r.URL.Path))
	}
	status := apiErr.HTTPStatus()
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", api.WWWAuthenticate(apiErr.Code))
	}
	JSON(w, status, api.ErrorResponse{Error: &api.Error{Code: apiErr.Code, Message: apiErr.Message}})
}

func errorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
