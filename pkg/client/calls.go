package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/api"
)

// Login starts a new session for the client's SPIFFE ID (POST /v1/sessions)
// and stores its token, replacing the stored one. A session the client held
// before is not ended: call Logout first for that. Only an --admin of
// tetherd may log in; others get an *Error with code not_admin. The session
// holds the identity's roles that need neither approval nor a shorter
// lifetime; LoginRoles asks for others.
func (c *Client) Login(ctx context.Context) (*api.Session, error) {
	return c.LoginRoles(ctx)
}

// LoginRoles is Login asking for roles (POST /v1/sessions with
// {"roles": [...]}); without roles it is Login. A role the identity may
// not hold is an *Error with code forbidden. A role that needs approvals
// makes the session pending (State api.StatePending): its token is stored,
// but tetherd refuses it with approval_pending until other identities
// Approve it, which this client never retries or logs in around (see the
// package doc). Poll Whoami to learn when it is active.
func (c *Client) LoginRoles(ctx context.Context, roles ...string) (*api.Session, error) {
	if err := c.lockAuth(ctx); err != nil {
		return nil, wrapf("login", err)
	}
	defer c.unlockAuth()
	_, s, err := c.login(ctx, roles...)
	if err != nil {
		return nil, wrapf("login", err)
	}
	return s, nil
}

// Approve approves the pending session sessionID, as the client's session
// (POST /v1/sessions/{id}/approve), and returns it: active once it has all
// the approvals its roles need, else still pending with one more approval.
// tetherd allows only identities its roles' approvers name, never the
// session's own: others get an *Error with code forbidden; a session that
// waits for nothing is bad_request, an unknown one not_found. An ID no
// session can have (see CheckSessionID) is refused with ErrInvalidSessionID
// and nothing is sent.
func (c *Client) Approve(ctx context.Context, sessionID string) (*api.Session, error) {
	return c.decide(ctx, "approve", sessionID, api.PathApprove)
}

// Deny denies the pending session sessionID (POST /v1/sessions/{id}/deny),
// which ends it, and returns it as it was when it ended. Who may deny, and
// the refusals, are those of Approve.
func (c *Client) Deny(ctx context.Context, sessionID string) (*api.Session, error) {
	return c.decide(ctx, "deny", sessionID, api.PathDeny)
}

// decide sends an approval or denial (action is api.PathApprove or
// api.PathDeny) of sessionID with the session token.
func (c *Client) decide(ctx context.Context, op, sessionID, action string) (*api.Session, error) {
	if err := CheckSessionID(sessionID); err != nil {
		return nil, wrapf(op, err)
	}
	op += " " + sessionID
	req, err := c.newRequest(ctx, http.MethodPost, api.PathSessions, sessionID, nil, nil)
	if err != nil {
		return nil, wrapf(op, err)
	}
	// The action follows the session ID's escaped segment.
	req.URL.Path += action
	if req.URL.RawPath != "" {
		req.URL.RawPath += action
	}
	resp, err := c.roundTrip(req) //nolint:bodyclose // answer closes it
	if err != nil {
		return nil, wrapf(op, err)
	}
	var out api.SessionResponse
	if err := answer(resp, &out); err != nil {
		return nil, wrapf(op, err)
	}
	return &out.Session, nil
}

// Rebind binds the stored session to the leaf certificate the SVID source
// holds now (POST /v1/sessions/self/rebind) and stores the new token. The
// session keeps its ID and absolute end. Requests made through the client
// rebind by themselves when tetherd answers certificate_rotated; Rebind is for
// doing it ahead of time. Without a stored token it returns ErrNoSession.
func (c *Client) Rebind(ctx context.Context) (*api.Session, error) {
	if err := c.lockAuth(ctx); err != nil {
		return nil, wrapf("rebind", err)
	}
	defer c.unlockAuth()
	token, unusable, err := c.loadToken()
	if err != nil {
		return nil, wrapf("rebind", err)
	}
	if unusable {
		return nil, ErrUnusableToken
	}
	if token == "" {
		return nil, ErrNoSession
	}
	_, s, err := c.rebind(ctx, token)
	if err != nil {
		return nil, wrapf("rebind", err)
	}
	return s, nil
}

// Whoami returns the client's session as tetherd sees it
// (GET /v1/sessions/self).
func (c *Client) Whoami(ctx context.Context) (*api.Session, error) {
	var out api.SessionResponse
	if err := c.call(ctx, http.MethodGet, api.PathSessionsSelf, "", nil, &out); err != nil {
		return nil, wrapf("whoami", err)
	}
	return &out.Session, nil
}

// Logout ends the client's session (DELETE /v1/sessions/self) and forgets
// its token. It never logs in. Without a stored token, or when tetherd says
// the session has already ended (or does not know the token), there is
// nothing to end: the token is forgotten and Logout returns nil. So is a
// stored token that cannot be one (see UsableToken): it is never sent.
func (c *Client) Logout(ctx context.Context) error {
	token, unusable, err := c.loadToken()
	if err != nil {
		return wrapf("logout", err)
	}
	if unusable {
		if err := c.store.DeleteToken(); err != nil {
			return wrapf("logout", fmt.Errorf("forget the token: %w", err))
		}
		return nil
	}
	if token == "" {
		return nil
	}
	err = c.call(withoutLogin(ctx), http.MethodDelete, api.PathSessionsSelf, "", nil, nil)
	var apiErr *Error
	if err == nil || errors.As(err, &apiErr) && (apiErr.Code == api.CodeSessionEnded || apiErr.Code == api.CodeInvalidToken) {
		if err := c.store.DeleteToken(); err != nil {
			return wrapf("logout", fmt.Errorf("forget the token: %w", err))
		}
		c.log.Debug("client.logout", "server", c.base.String())
		return nil
	}
	return wrapf("logout", err)
}

// List returns the live sessions, oldest first (GET /v1/sessions); with a
// non-zero id only those of that SPIFFE ID.
func (c *Client) List(ctx context.Context, id spiffeid.ID) ([]api.Session, error) {
	q := url.Values{}
	if !id.IsZero() {
		q.Set(api.QuerySPIFFEID, id.String())
	}
	var out api.SessionsResponse
	if err := c.call(ctx, http.MethodGet, api.PathSessions, "", q, &out); err != nil {
		return nil, wrapf("list sessions", err)
	}
	if out.Sessions == nil {
		out.Sessions = []api.Session{}
	}
	return out.Sessions, nil
}

// Revoke ends the session sessionID (DELETE /v1/sessions/{id}). An unknown
// session is an *Error with code not_found. An ID no session can have
// ("self", say: see CheckSessionID) is refused with ErrInvalidSessionID and
// nothing is sent.
func (c *Client) Revoke(ctx context.Context, sessionID string) error {
	if err := CheckSessionID(sessionID); err != nil {
		return wrapf("revoke", err)
	}
	err := c.call(ctx, http.MethodDelete, api.PathSessions, sessionID, nil, nil)
	return wrapf("revoke "+sessionID, err)
}

// RevokeIdentity ends every session of the SPIFFE ID id
// (DELETE /v1/sessions?spiffe_id=ID) and returns how many there were.
func (c *Client) RevokeIdentity(ctx context.Context, id spiffeid.ID) (int, error) {
	if id.IsZero() {
		return 0, errors.New("client: revoke: no SPIFFE ID")
	}
	q := url.Values{api.QuerySPIFFEID: {id.String()}}
	var out api.RevokeResponse
	if err := c.call(ctx, http.MethodDelete, api.PathSessions, "", q, &out); err != nil {
		return 0, wrapf("revoke sessions of "+id.String(), err)
	}
	return out.Revoked, nil
}

// RevokeOwn ends every session of the client's own SPIFFE ID (the one of the
// SVID the source holds now) with the SVID alone: DELETE
// /v1/sessions?spiffe_id=OWN without a token. It never sends the stored
// token, never logs in and never rebinds, so it works when no session can be
// had (at tetherd's per-identity cap, say), and it returns how many sessions
// ended. The stored token, whose session is one of them, is then forgotten;
// logins and rebinds of the client wait until that is done.
func (c *Client) RevokeOwn(ctx context.Context) (int, error) {
	svid, err := c.svids.GetX509SVID()
	if err != nil {
		return 0, wrapf("revoke own sessions", fmt.Errorf("own X.509 SVID: %w", err))
	}
	if svid == nil || svid.ID.IsZero() {
		return 0, errors.New("client: revoke own sessions: the source holds no SVID")
	}
	op := "revoke own sessions of " + svid.ID.String()
	if err := c.lockAuth(ctx); err != nil {
		return 0, wrapf(op, err)
	}
	defer c.unlockAuth()
	q := url.Values{api.QuerySPIFFEID: {svid.ID.String()}}
	var out api.RevokeResponse
	if err := c.callSVIDAlone(ctx, http.MethodDelete, api.PathSessions, q, nil, &out); err != nil {
		return 0, wrapf(op, err)
	}
	if err := c.store.DeleteToken(); err != nil {
		return out.Revoked, wrapf(op, fmt.Errorf("forget the token: %w", err))
	}
	c.log.Debug("client.revoke_own", "server", c.base.String(), "spiffe_id", svid.ID.String(), "revoked", out.Revoked)
	return out.Revoked, nil
}

// Introspect asks tetherd whether token is live and bound to the certificate
// fingerprint fp (base64url SHA-256 of the leaf's DER, see svid.Fingerprint)
// (POST /v1/introspect). Only an --introspector of tetherd may ask; it needs
// no session. Active is false for any token that is not live or not bound to
// fp.
func (c *Client) Introspect(ctx context.Context, token, fp string) (*api.IntrospectResponse, error) {
	var out api.IntrospectResponse
	in := api.IntrospectRequest{Token: token, CNF: api.CNF{X5TS256: fp}}
	if err := c.callSVIDAlone(ctx, http.MethodPost, api.PathIntrospect, nil, in, &out); err != nil {
		return nil, wrapf("introspect", err)
	}
	return &out, nil
}

// newRequest is an API request: path (an api.Path… constant) on the server,
// with sub (if not empty) as one more, escaped, path segment, the query, and
// in (if not nil) as its JSON body. Every request the client makes of itself
// is built here; Do takes the caller's.
func (c *Client) newRequest(ctx context.Context, method, path, sub string, query url.Values, in any) (*http.Request, error) {
	u := c.endpoint(path, query)
	if sub != "" {
		// Only a session ID goes there: never a segment that would name
		// another route (self, a dot segment, a '/').
		if err := CheckSessionID(sub); err != nil {
			return nil, err
		}
		u.Path += "/" + sub
		u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + path + "/" + url.PathEscape(sub)
	}
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// call makes an API request without a body with the session token (see
// roundTrip). out, if not nil, receives the JSON answer.
func (c *Client) call(ctx context.Context, method, path, sub string, query url.Values, out any) error {
	return c.exchange(ctx, c.roundTrip, method, path, sub, query, nil, out)
}

// callSVIDAlone makes an API request that carries no session token: the
// SVID alone is the credential (introspection, revoking one's own
// sessions). It never logs in or rebinds. in, if not nil, is the JSON body;
// out, if not nil, receives the JSON answer.
func (c *Client) callSVIDAlone(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return c.exchange(ctx, c.send, method, path, "", query, in, out)
}

// exchange builds an API request (newRequest), sends it with send and reads
// the answer into out.
func (c *Client) exchange(ctx context.Context, send func(*http.Request) (*http.Response, error), method, path, sub string, query url.Values, in, out any) error {
	req, err := c.newRequest(ctx, method, path, sub, query, in)
	if err != nil {
		return err
	}
	resp, err := send(req) //nolint:bodyclose // answer closes it
	if err != nil {
		return err
	}
	return answer(resp, out)
}

// answer reads a 2xx JSON answer into out (or drains it if out is nil), or
// returns the *Error of any other answer. It closes the body.
func answer(resp *http.Response, out any) error {
	if out == nil {
		if resp.StatusCode/100 != 2 {
			return readError(resp)
		}
		drain(resp.Body)
		return nil
	}
	return decode(resp, out)
}

// decode reads a 2xx JSON answer into out, or returns the *Error of any
// other answer. It closes the body.
func decode(resp *http.Response, out any) error {
	if resp.StatusCode/100 != 2 {
		return readError(resp)
	}
	defer drain(resp.Body)
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(out); err != nil {
		return fmt.Errorf("read the answer of tetherd: %w", err)
	}
	return nil
}
