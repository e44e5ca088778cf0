package session

import (
	"fmt"
	"time"

	"github.com/tetherproject/tether/pkg/api"
)

// Error is a refusal by the Manager: the public contract code and an internal
// reason (a short, fixed word for logs and metrics, never a secret). It
// renders itself (APIError): the public message says no more than the code,
// whatever the reason.
type Error struct {
	Code   api.Code
	Reason string
	// RetryAfter is set on rate_limited and unavailable refusals.
	RetryAfter time.Duration
	// Detail, if set, is the public message instead of the code's own; it
	// names only identities and roles, never a secret.
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("session: %s (%s)", e.Code, e.Reason)
}

// Is matches an *api.Error of the same code, so callers test refusals with
// errors.Is(err, &api.Error{Code: api.CodeSessionEnded}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*api.Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// APIError is the refusal as it is answered: the code and its public
// message.
func (e *Error) APIError() *api.Error {
	msg := messages[e.Code]
	if e.Detail != "" {
		msg = e.Detail
	}
	if e.Reason == ReasonSameLeaf {
		msg = "the session is already bound to this certificate: nothing to rebind"
	}
	if e.Reason == ReasonOlderLeaf {
		msg = "this certificate is not newer than the one the session is bound to: rebind from the newest SVID"
	}
	return &api.Error{Code: e.Code, Message: msg}
}

// RetryDelay is how long a rate-limited caller should wait.
func (e *Error) RetryDelay() time.Duration { return e.RetryAfter }

// messages are the public messages of the refusals, the same for every
// reason, so an answer tells a caller no more than its code.
var messages = map[api.Code]string{
	api.CodeMissingToken:       "no bearer token: send Authorization: Bearer TOKEN",
	api.CodeInvalidToken:       "the token is not valid for this caller",
	api.CodeSessionEnded:       "the session has ended: log in again",
	api.CodeCertificateRotated: "the session is bound to another certificate of this identity: rebind or log in again",
	api.CodeSessionLimit:       "too many live sessions",
	api.CodeRateLimited:        "too many logins: retry later",
	api.CodeNotFound:           "no such session",
	api.CodeBadRequest:         "bad request",
	api.CodeApprovalPending:    "the session waits for approval: an approver runs 'tether sessions approve SESSION_ID'",
}

// Reasons, the fixed vocabulary of the Reason field.
const (
	ReasonMalformed     = "malformed"            // too long, or not shaped as a compact JWS
	ReasonOtherIdentity = "other_identity"       // a token (live or tombstoned) of another SPIFFE ID
	ReasonUnknown       = "unknown_session"      // neither live nor tombstoned: never ours, forgotten, or past its exp
	ReasonOtherKey      = "unknown_key"          // signed by a key this process does not hold: a previous instance's (restart) or another issuer's
	ReasonEnded         = "ended"                // the caller's session was logged out or revoked
	ReasonSuperseded    = "superseded"           // replaced by a rebind
	ReasonExpired       = "expired"              // past its absolute end
	ReasonIdle          = "idle"                 // unused for the idle timeout
	ReasonFingerprint   = "fingerprint_mismatch" // right identity, other leaf
	ReasonSameLeaf      = "same_leaf"            // rebind over the bound leaf
	ReasonOlderLeaf     = "older_leaf"           // rebind over a leaf not newer than the bound one
	ReasonMissingToken  = "missing_token"        // no Authorization: Bearer (decided by package auth)
	ReasonPending       = "approval_pending"     // the session waits for approvals
	ReasonRoleNotHeld   = "role_not_held"        // a role asked for that the identity may not hold
	ReasonNotPending    = "not_pending"          // approve or deny of a session that waits for nothing
	ReasonSelfApproval  = "self_approval"        // a requester approving its own session
	ReasonNotApprover   = "not_approver"         // an approver the role does not allow
	ReasonDenied        = "denied"               // the session's approval was denied
	ReasonLimitTotal    = "max_sessions"
	ReasonLimitIdentity = "max_sessions_per_identity"
	ReasonRate          = "login_rate"
	ReasonNoSuchSession = "no_such_session"
	ReasonConflict      = "conflict" // the record kept changing under a write; retry
	ReasonStale         = "stale"    // a replica cannot prove its view of the sessions current
	ReasonStoreDown     = "store"    // a replica's write did not reach the shared store
)

// Reasons the Manager no longer gives: it checks no token signature since
// refusals are answered from tombstones. Kept so that code naming them still
// builds.
const ()

func reject(code api.Code, reason string) *Error { return &Error{Code: code, Reason: reason} }
