package session

import (
	"fmt"
	"time"

	"github.com/tetherproject/tether/pkg/api"
)

// Error is a refusal by the Manager: the public contract code and an internal
// reason (a short, fixed word for logs and metrics, never a secret).
type Error struct {
	Code   api.Code
	Reason string
	// RetryAfter is set on rate_limited refusals.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("session: %s (%s)", e.Code, e.Reason)
}

// Is matches the sentinel errors below by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidToken       = &Error{Code: api.CodeInvalidToken}
	ErrSessionEnded       = &Error{Code: api.CodeSessionEnded}
	ErrCertificateRotated = &Error{Code: api.CodeCertificateRotated}
	ErrSessionLimit       = &Error{Code: api.CodeSessionLimit}
	ErrRateLimited        = &Error{Code: api.CodeRateLimited}
	ErrNotFound           = &Error{Code: api.CodeNotFound}
	ErrBadRequest         = &Error{Code: api.CodeBadRequest}
)

// Reasons, the fixed vocabulary of the Reason field.
const (
	ReasonMalformed     = "malformed"            // not a compact JWS of ours, or too long
	ReasonSignature     = "bad_signature"        // wrong key, algorithm or signature
	ReasonClaims        = "bad_claims"           // iss, aud, types or required claims wrong
	ReasonOtherIdentity = "other_identity"       // a token of another SPIFFE ID
	ReasonUnknown       = "unknown_session"      // genuine, but not live and not the caller's
	ReasonEnded         = "ended"                // the caller's session is gone
	ReasonSuperseded    = "superseded"           // replaced by a rebind
	ReasonExpired       = "expired"              // past its absolute end
	ReasonIdle          = "idle"                 // unused for the idle timeout
	ReasonFingerprint   = "fingerprint_mismatch" // right identity, other leaf
	ReasonSameLeaf      = "same_leaf"            // rebind over the bound leaf
	ReasonLimitTotal    = "max_sessions"
	ReasonLimitIdentity = "max_sessions_per_identity"
	ReasonRate          = "login_rate"
	ReasonNoSuchSession = "no_such_session"
)

func reject(code api.Code, reason string) *Error { return &Error{Code: code, Reason: reason} }
