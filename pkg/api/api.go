package api

import "time"

// Paths of the HTTP API.
const (
	PathSessions     = "/v1/sessions"
	PathSessionsSelf = "/v1/sessions/self"
	PathRebind       = "/v1/sessions/self/rebind"
	PathIntrospect   = "/v1/introspect"
	// PathApprove and PathDeny follow a session's path: /v1/sessions/{id}/approve.
	PathApprove = "/approve"
	PathDeny    = "/deny"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
)

// QuerySPIFFEID is the query parameter that selects sessions by SPIFFE ID.
const QuerySPIFFEID = "spiffe_id"

// MaxBodyBytes is the largest request body tetherd reads (64 KiB).
const MaxBodyBytes = 64 << 10

// CNF is the confirmation claim of RFC 7800 as profiled by RFC 8705 §3.1: the
// base64url (no padding) SHA-256 of the DER of the certificate the token is
// bound to.
type CNF struct {
	X5TS256 string `json:"x5t#S256"`
}

// Session is the public view of a session. It never carries a token.
type Session struct {
	SessionID     string    `json:"session_id"`
	SPIFFEID      string    `json:"spiffe_id"`
	CNF           CNF       `json:"cnf"`
	CreatedAt     time.Time `json:"created_at"`
	LastUsedAt    time.Time `json:"last_used_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	// Roles the session holds (never null: [] without roles).
	Roles []string `json:"roles"`
	// State is StateActive, or StatePending while it waits for approvals.
	State string `json:"state"`
	// Approvals received, oldest first (never null).
	Approvals []Approval `json:"approvals"`
	// AuthenticatedAt is when its owner last proved its SVID by logging in
	// (RFC 9470's auth_time); a rebind keeps it.
	AuthenticatedAt time.Time `json:"authenticated_at"`
}

// States of a session.
const (
	StateActive  = "active"
	StatePending = "pending"
)

// Approval is one approver's approval of a pending session.
type Approval struct {
	SPIFFEID string    `json:"spiffe_id"`
	At       time.Time `json:"at"`
}

// LoginRequest is the optional body of POST /v1/sessions.
type LoginRequest struct {
	// Roles asks for these roles; without them the session gets the
	// identity's roles that need neither approval nor a shorter lifetime.
	Roles []string `json:"roles,omitempty"`
}

// LoginResponse answers POST /v1/sessions and POST /v1/sessions/self/rebind.
type LoginResponse struct {
	Token   string  `json:"token"`
	Session Session `json:"session"`
}

// SessionResponse answers GET /v1/sessions/self.
type SessionResponse struct {
	Session Session `json:"session"`
}

// SessionsResponse answers GET /v1/sessions, oldest session first.
type SessionsResponse struct {
	Sessions []Session `json:"sessions"`
}

// RevokeResponse answers DELETE /v1/sessions?spiffe_id=ID.
type RevokeResponse struct {
	Revoked int `json:"revoked"`
}

// IntrospectRequest is the body of POST /v1/introspect.
type IntrospectRequest struct {
	Token string `json:"token"`
	CNF   CNF    `json:"cnf"`
}

// IntrospectResponse answers POST /v1/introspect. Session is set only when
// Active is true.
type IntrospectResponse struct {
	Active  bool     `json:"active"`
	Session *Session `json:"session,omitempty"`
}
