package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/api"
)

// ErrNoSession is returned when auto-login is off and no session token is
// stored.
var ErrNoSession = errors.New("client: no session: log in first")

// CodeUnexpectedResponse is the code of the *Error returned for an answer
// that is not the contract's: a status the call does not expect, without a
// contract error body (a proxy's error page, say).
const CodeUnexpectedResponse api.Code = "unexpected_response"

// Error is tetherd's refusal as the client received it: the contract's code
// and message, the HTTP status, and the Retry-After it asked for (zero if
// none). errors.Is(err, &api.Error{Code: c}) matches it by code.
type Error struct {
	Code       api.Code
	Message    string
	Status     int
	RetryAfter time.Duration
}

// Error implements error with the code and message.
func (e *Error) Error() string {
	return (&api.Error{Code: e.Code, Message: e.Message}).Error()
}

// Is matches an *api.Error or an *Error of the same code (without a
// message).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *api.Error:
		return t.Message == "" && t.Code == e.Code
	case *Error:
		return t.Message == "" && t.Code == e.Code
	}
	return false
}

// ServerError is returned (inside the TLS handshake error) when the client
// refuses the server: its certificate is not an X.509 SVID that chains to
// the bundle (Err is why), or it is a valid SVID of another SPIFFE ID than
// the expected one (Got; Err is nil).
type ServerError struct {
	Want, Got spiffeid.ID
	Err       error
}

// Error implements error.
func (e *ServerError) Error() string {
	if e.Err != nil {
		return "the server's certificate is not a valid SVID of a trusted trust domain: " + e.Err.Error()
	}
	return fmt.Sprintf("the server presented %s, not the expected %s", e.Got, e.Want)
}

// Unwrap returns the verification error, if any.
func (e *ServerError) Unwrap() error { return e.Err }

// redirectRefused is the error for a redirect (any 3xx status) from tetherd,
// or whatever answers at its address: the client never follows one, on any
// path, so that a token travels to tetherd only. It is an unexpected
// response with the 3xx status.
func redirectRefused(status int, location string) *Error {
	return &Error{Code: CodeUnexpectedResponse, Status: status,
		Message: fmt.Sprintf("tetherd answered %d, a redirect to %q: refused (a token goes to tetherd only)", status, location)}
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = api.MaxBodyBytes

// maxRetryAfterSecs caps a Retry-After from the server (one day).
const maxRetryAfterSecs = 24 * 60 * 60

// maxBody bounds how much of a successful answer is read (a list of
// --max-sessions sessions fits).
const maxBody = 32 << 20

// readError turns a non-2xx answer into an *Error, and closes the body.
func readError(resp *http.Response) *Error {
	defer drain(resp.Body)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := parseError(resp.StatusCode, resp.Status, body)
	// Retry-After in seconds; an absurd value (it would overflow a
	// Duration) is capped at a day rather than trusted.
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(min(secs, maxRetryAfterSecs)) * time.Second
	}
	return e
}

func parseError(status int, statusText string, body []byte) *Error {
	var er api.ErrorResponse
	if err := json.Unmarshal(body, &er); err == nil && er.Error != nil && er.Error.Code != "" {
		return &Error{Code: er.Error.Code, Message: er.Error.Message, Status: status}
	}
	return &Error{Code: CodeUnexpectedResponse, Message: "unexpected answer: " + statusText, Status: status}
}

// peekError reads the error code of a 401 answer and puts the body back so
// the caller can still read it.
func peekError(resp *http.Response) *Error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	if err != nil {
		return nil
	}
	return parseError(resp.StatusCode, resp.Status, body)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// wrapf wraps err once with the package prefix and the operation. Errors
// made inside the package carry no prefix of their own, except ErrNoSession,
// which is returned as is.
func wrapf(op string, err error) error {
	if err == nil || errors.Is(err, ErrNoSession) {
		return err
	}
	return fmt.Errorf("client: %s: %w", op, err)
}
