package api

import (
	"fmt"
	"net/http"
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
	CodeRoleRequired       Code = "role_required"
	CodeApprovalPending    Code = "approval_pending"
	CodeInsufficientAuth   Code = "insufficient_user_authentication"
)

// Status is the HTTP status that goes with the code; 500 for unknown codes.
func (c Code) Status() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeMissingToken, CodeInvalidToken, CodeSessionEnded, CodeCertificateRotated, CodeInsufficientAuth:
		return http.StatusUnauthorized
	case CodeNotAdmin, CodeForbidden, CodeRoleRequired, CodeApprovalPending:
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

// Error is an API error as it goes on the wire: the contract's code and a
// public message. It carries nothing else: a client's view of an answer (its
// status, Retry-After) is pkg/client's Error, and a server's internal cause
// is logged where it happens, never put in an Error.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error *Error `json:"error"`
}

// Error implements error with the public code and message.
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// APIError returns e: an *Error is answered as it is. Other errors that
// know how they are answered implement the same method.
func (e *Error) APIError() *Error { return e }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &api.Error{Code: api.CodeSessionEnded}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == ""
}

// WWWAuthenticate is the challenge sent with every 401 (RFC 6750 §3).
func WWWAuthenticate(c Code) string {
	switch c {
	case CodeMissingToken:
		return `Bearer realm="tether", error="invalid_request"`
	case CodeInsufficientAuth:
		return `Bearer realm="tether", error="insufficient_user_authentication"`
	}
	return `Bearer realm="tether", error="invalid_token"`
}

// StepUpChallenge is the WWW-Authenticate of a 401
// insufficient_user_authentication (RFC 9470 §3): log in again, at most
// maxAge seconds before the request.
func StepUpChallenge(maxAgeSeconds int64) string {
	return fmt.Sprintf(`Bearer realm="tether", error="insufficient_user_authentication", max_age=%d`, maxAgeSeconds)
}
