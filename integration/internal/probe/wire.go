package probe

import (
	"encoding/json"
	"time"

	"github.com/tetherproject/tether/pkg/api"
)

// Operations of a Command.
const (
	// OpSVID reports the current SVID (Result.SVID).
	OpSVID = "svid"
	// OpWaitSVID waits, on the X509Source's Updated channel, until the current
	// SVID's fingerprint differs from Command.NotFingerprint (if set) and its
	// remaining lifetime is within [Command.MinTTL, Command.MaxTTL] (bounds
	// that are zero are not checked), at most Command.Timeout.
	OpWaitSVID = "wait_svid"
	// OpPin keeps the current SVID (chain and key) under the name Command.Slot.
	OpPin = "pin"
	// OpRequest performs one HTTP request on a new TLS connection.
	OpRequest = "request"
	// OpSaveToken writes the token in slot Command.Slot to Command.File (0600).
	OpSaveToken = "save_token"
	// OpLoadToken reads Command.File into token slot Command.Slot.
	OpLoadToken = "load_token"
)

// Command is one line on the probe's standard input.
type Command struct {
	// Seq is echoed in the Result; the driver sets it.
	Seq int    `json:"seq"`
	Op  string `json:"op"`

	// Method and Path of an OpRequest, e.g. "POST", "/v1/sessions".
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	// Body of an OpRequest, sent as application/json if set.
	Body json.RawMessage `json:"body,omitempty"`
	// Token names the token slot whose token goes in Authorization: Bearer.
	Token string `json:"token,omitempty"`
	// SaveToken names the slot a token in the answer is kept in.
	SaveToken string `json:"save_token,omitempty"`
	// Leaf names a pinned SVID to present; empty means the current SVID.
	Leaf string `json:"leaf,omitempty"`

	// Slot and File for OpPin, OpSaveToken and OpLoadToken.
	Slot string `json:"slot,omitempty"`
	File string `json:"file,omitempty"`

	// Conditions and limit of OpWaitSVID.
	NotFingerprint string        `json:"not_fingerprint,omitempty"`
	MinTTL         time.Duration `json:"min_ttl,omitempty"`
	MaxTTL         time.Duration `json:"max_ttl,omitempty"`
	Timeout        time.Duration `json:"timeout,omitempty"`
}

// Leaf describes an X.509 leaf certificate.
type Leaf struct {
	SPIFFEID string `json:"spiffe_id"`
	// Fingerprint is x5t#S256 (svid.Fingerprint).
	Fingerprint string    `json:"fingerprint"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// Claims are the claims of a token the probe received, decoded without
// verifying the signature (the probe cannot; tetherd's key never leaves it).
type Claims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Jti string          `json:"jti"`
	Iat int64           `json:"iat"`
	Exp int64           `json:"exp"`
	Cnf *api.CNF        `json:"cnf"`
}

// Result is one line on the probe's standard output.
type Result struct {
	Seq int    `json:"seq"`
	Op  string `json:"op"`
	// Error is a local failure: no answer from tetherd (TLS, connection), an
	// unknown slot, a file that could not be read. Empty if the op ran.
	Error string `json:"error,omitempty"`

	// SVID is the current SVID (ready line, OpSVID, OpWaitSVID, OpPin).
	SVID *Leaf `json:"svid,omitempty"`

	// For OpRequest: the HTTP status, the error code and message of an error
	// answer, the WWW-Authenticate header, the session(s) in the answer.
	Status          int           `json:"status,omitempty"`
	Code            api.Code      `json:"code,omitempty"`
	Message         string        `json:"message,omitempty"`
	WWWAuthenticate string        `json:"www_authenticate,omitempty"`
	Allow           string        `json:"allow,omitempty"`
	Session         *api.Session  `json:"session,omitempty"`
	Sessions        []api.Session `json:"sessions,omitempty"`
	Revoked         *int          `json:"revoked,omitempty"`
	// GotToken reports that the answer carried a token (kept in SaveToken's
	// slot); TokenClaims are its claims.
	GotToken    bool    `json:"got_token,omitempty"`
	TokenClaims *Claims `json:"token_claims,omitempty"`
	// Client is the leaf the probe presented, Server the one tetherd served.
	Client *Leaf `json:"client,omitempty"`
	Server *Leaf `json:"server,omitempty"`
}
