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
	ReasonMalformed     = "malformed"            // too long, or not shaped as a compact JWS
	ReasonOtherIdentity = "other_identity"       // a token (live or tombstoned) of another SPIFFE ID
	ReasonUnknown       = "unknown_session"      // neither live nor tombstoned: never ours, forgotten, or past its exp
	ReasonEnded         = "ended"                // the caller's session was logged out or revoked
	ReasonSuperseded    = "superseded"           // replaced by a rebind
	ReasonExpired       = "expired"              // past its absolute end
	ReasonIdle          = "idle"                 // unused for the idle timeout
	ReasonFingerprint   = "fingerprint_mismatch" // right identity, other leaf
	ReasonSameLeaf      = "same_leaf"            // rebind over the bound leaf
	ReasonOlderLeaf     = "older_leaf"           // rebind over a leaf not newer than the bound one
	ReasonLimitTotal    = "max_sessions"
	ReasonLimitIdentity = "max_sessions_per_identity"
	ReasonRate          = "login_rate"
	ReasonNoSuchSession = "no_such_session"
)

// Reasons the Manager no longer gives: it checks no token signature since
// refusals are answered from tombstones. Kept so that code naming them still
// builds.
const (
	ReasonSignature = "bad_signature"
	ReasonClaims    = "bad_claims"
)

func reject(code api.Code, reason string) *Error { return &Error{Code: code, Reason: reason} }
