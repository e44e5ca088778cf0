package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidSessionID is what the calls that name a session in their path
// (Revoke, Approve, Deny) return, wrapped with the ID and why, for an ID no
// session can have (see CheckSessionID). Nothing is sent then.
var ErrInvalidSessionID = errors.New("not a session ID")

// sessionIDError is a refused session ID: its message says which and why;
// it unwraps to ErrInvalidSessionID.
type sessionIDError struct{ msg string }

func (e *sessionIDError) Error() string { return e.msg }
func (e *sessionIDError) Unwrap() error { return ErrInvalidSessionID }

// CheckSessionID returns nil if id can be a session ID, else an error that
// wraps ErrInvalidSessionID. tetherd's session IDs are 26 lowercase base32
// characters; any ID of ASCII letters, digits, '-' and '_' is accepted, so
// that another form of ID still works, and nothing else: such an ID is one
// path segment of its own, never "self" (the path of the caller's own
// session: DELETE /v1/sessions/self is a logout), never "." or "..", never
// with a '/', '%', '?' or '#' that would take the request to another route.
func CheckSessionID(id string) error {
	switch id {
	case "":
		return &sessionIDError{"no session ID"}
	case "self":
		return &sessionIDError{`"self" is not a session ID: it is the path of the caller's own session`}
	case ".", "..":
		return &sessionIDError{fmt.Sprintf("%q is not a session ID", id)}
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return &sessionIDError{quoteArg(id) + " is not a session ID: it may hold only ASCII letters, digits, '-' and '_'"}
		}
	}
	return nil
}

// quoteArg quotes a refused ID for its error, unless it may be a token
// pasted in its place (a dot, or longer than any session ID): a token is
// never written back, even to whoever pasted it.
func quoteArg(id string) string {
	if len(id) > 64 || strings.Contains(id, ".") {
		return fmt.Sprintf("the argument (%d characters, not shown)", len(id))
	}
	return strconv.Quote(id)
}

func idChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// MaxTokenBytes is the longest token the client sends: tetherd's are about
// 450 bytes and it looks at none longer (session.MaxTokenBytes).
const MaxTokenBytes = 4096

// UsableToken reports whether token can be a session token of tetherd: not
// empty, at most MaxTokenBytes, and only of the compact JWS alphabet
// (base64url and dots, as session.InJWSAlphabet). A stored token that is
// not is never sent: the client treats it as no session (see
// ErrUnusableToken).
func UsableToken(token string) bool {
	if token == "" || len(token) > MaxTokenBytes {
		return false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; !idChar(c) && c != '.' {
			return false
		}
	}
	return true
}

// ErrUnusableToken is returned in place of ErrNoSession when the TokenStore
// holds something that cannot be a token (see UsableToken: a damaged cache,
// say) and the client may not log in. errors.Is(err, ErrNoSession) holds
// for it too. Requests that may log in treat such a token as none: they log
// in and store the new token over it.
var ErrUnusableToken error = unusableTokenError{}

type unusableTokenError struct{}

func (unusableTokenError) Error() string {
	return "client: no usable session: the stored token cannot be a token of tetherd: log in first"
}

// Is makes ErrUnusableToken an ErrNoSession.
func (unusableTokenError) Is(target error) bool { return target == ErrNoSession }
