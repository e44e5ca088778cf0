package api

import (
	"fmt"
	"net/http"
	"time"
)

// Code is a stable, machine-readable error code of the contract.
type Code string

// The error codes of the contract. Clients branch on these, never on messages.
const (
	CodeBadRequest         Code = "bad_request"
	CodeMissingToken       Code = "missing_token"
	CodeInvalidToken       Code = "invalid_token"
	CodeSessionEnded       Code = "session_ended"
	CodeCertificateRotated Code = "certificate_rotated"
	CodeNotAdmin           Code = "not_admin"
	CodeForbidden          Code = "forbidden"
	CodeNotFound           Code = "not_found"
	CodeMethodNotAllowed   Code = "method_not_allowed"
	CodePayloadTooLarge    Code = "payload_too_large"
	CodeHeadersTooLarge    Code = "headers_too_large"
	CodeSessionLimit       Code = "session_limit"
	CodeRateLimited        Code = "rate_limited"
	CodeInternal           Code = "internal"
	CodeUnavailable        Code = "unavailable"
)

// Status is the HTTP status that goes with the code; 500 for unknown codes.
func (c Code) Status() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeMissingToken, CodeInvalidToken, CodeSessionEnded, CodeCertificateRotated:
		return http.StatusUnauthorized
	case CodeNotAdmin, CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeHeadersTooLarge:
		return http.StatusRequestHeaderFieldsTooLarge
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeSessionLimit, CodeRateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// Error is an API error: the public code and message that go on the wire, and
// (server side only) a cause that is logged but never sent.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`

	// Status is the HTTP status the error came with (client side) or goes out
	// with (server side); zero means Code.Status().
	Status int `json:"-"`
	// RetryAfter is the Retry-After of a 429 (client side), zero if none.
	RetryAfter time.Duration `json:"-"`
	// Cause is the internal reason, for the log only.
	Cause error `json:"-"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error *Error `json:"error"`
}

// Errorf returns an *Error with the code and a formatted public message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error implements error with the public code and message.
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the hidden cause.
func (e *Error) Unwrap() error { return e.Cause }

// HTTPStatus is the status the error is answered with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return e.Code.Status()
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &api.Error{Code: api.CodeSessionEnded}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == ""
}

// WWWAuthenticate is the challenge sent with every 401 (RFC 6750 §3).
func WWWAuthenticate(c Code) string {
	if c == CodeMissingToken {
		return `Bearer realm="tether", error="invalid_request"`
	}
	return `Bearer realm="tether", error="invalid_token"`
}
