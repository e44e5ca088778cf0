package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tetherproject/tether/pkg/api"
)

// roundTrip sends req with the session token and recovers once from a
// rotated or ended session: Do and the typed calls that need a session come
// through here. Its errors carry no package prefix.
func (c *Client) roundTrip(req *http.Request) (*http.Response, error) {
	if !c.sameServer(req) {
		closeBody(req)
		return nil, fmt.Errorf("refusing to send the session token to %s://%s: it is not tetherd at %s", req.URL.Scheme, req.URL.Host, c.base.Host)
	}
	ctx := req.Context()
	token, err := c.token(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := c.send(withBearer(req, token))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	apiErr := peekError(resp)
	if apiErr == nil {
		return resp, nil
	}
	switch apiErr.Code {
	case api.CodeCertificateRotated, api.CodeSessionEnded, api.CodeInvalidToken,
		api.CodeInsufficientAuth: // RFC 9470: a service asks for a fresher login
	default:
		return resp, nil
	}
	fresh, ok, err := c.recover(ctx, token, apiErr.Code)
	if err != nil {
		drain(resp.Body)
		return nil, err
	}
	if !ok || !replayable(req) {
		// Without a new token, or with a body that cannot be sent again, the
		// caller gets the answer as it came (the next request uses the new
		// token, if any).
		return resp, nil
	}
	drain(resp.Body)
	retry, err := rewind(req)
	if err != nil {
		return nil, err
	}
	c.log.Debug("client.retry", "reason", string(apiErr.Code), "method", req.Method, "path", req.URL.Path)
	return c.send(withBearer(retry, fresh))
}

// token returns the stored token, logging in first when there is none (and
// logging in is allowed).
// A stored token that cannot be one (see UsableToken) is no token: it is
// never sent, and a login replaces it.
func (c *Client) token(ctx context.Context) (string, error) {
	token, unusable, err := c.loadToken()
	if err != nil || token != "" {
		return token, err
	}
	if !c.mayLogin(ctx) {
		if unusable {
			return "", ErrUnusableToken
		}
		return "", ErrNoSession
	}
	if err := c.lockAuth(ctx); err != nil {
		return "", err
	}
	defer c.unlockAuth()
	// Another request may have logged in while this one waited.
	if token, _, err = c.loadToken(); err != nil || token != "" {
		return token, err
	}
	token, _, err = c.login(ctx)
	if err != nil {
		return "", fmt.Errorf("log in: %w", err)
	}
	return token, nil
}

// recover gets a token that replaces stale after tetherd answered code to it:
// a rebound one for certificate_rotated, a new session's for session_ended,
// invalid_token and insufficient_user_authentication (the login is older than
// the call allows: a new login is the fresh one it asks for; the old session
// idles out). ok is false when there is nothing to retry with (login
// not allowed).
func (c *Client) recover(ctx context.Context, stale string, code api.Code) (token string, ok bool, err error) {
	if err := c.lockAuth(ctx); err != nil {
		return "", false, err
	}
	defer c.unlockAuth()

	// Concurrent requests that met the same answer recover it once: the
	// first one stores a new token, the others retry with it.
	current, _, err := c.loadToken()
	if err != nil {
		return "", false, err
	}
	if current != "" && current != stale {
		return current, true, nil
	}

	if code == api.CodeCertificateRotated {
		token, _, err := c.rebind(ctx, stale)
		if err == nil {
			return token, true, nil
		}
		var apiErr *Error
		if !errors.As(err, &apiErr) || !c.mayLogin(ctx) {
			return "", false, fmt.Errorf("rebind: %w", err)
		}
		switch apiErr.Code {
		case api.CodeSessionEnded, api.CodeInvalidToken:
			// The session ended too: start a new one.
		case api.CodeBadRequest:
			// tetherd will not move the session to the leaf presented now:
			// it is not strictly newer than the bound one (two leaves of
			// the same second, or an older SVID back in use). No rebind
			// will ever succeed from it: start a new session with it. The
			// old one stays bound to the leaf no longer presented and
			// idles out.
			c.log.Debug("client.rebind_refused", "code", string(apiErr.Code), "server", c.base.String())
		default:
			// approval_pending above all: only an approver changes that
			// answer, and a new login would be one more pending session.
			return "", false, fmt.Errorf("rebind: %w", err)
		}
	}
	if !c.mayLogin(ctx) {
		return "", false, nil
	}
	token, _, err = c.login(ctx)
	if err != nil {
		return "", false, fmt.Errorf("log in again after %s: %w", code, err)
	}
	return token, true, nil
}

// login starts a session, with roles if any are given, and stores its
// token. The caller holds the auth lock.
func (c *Client) login(ctx context.Context, roles ...string) (string, *api.Session, error) {
	var in any
	if len(roles) > 0 {
		in = api.LoginRequest{Roles: roles}
	}
	req, err := c.newRequest(ctx, http.MethodPost, api.PathSessions, "", nil, in)
	if err != nil {
		return "", nil, err
	}
	return c.issue(req)
}

// rebind binds the session of token to the leaf the source holds now and
// stores the new token. The caller holds the auth lock.
func (c *Client) rebind(ctx context.Context, token string) (string, *api.Session, error) {
	req, err := c.newRequest(ctx, http.MethodPost, api.PathRebind, "", nil, nil)
	if err != nil {
		return "", nil, err
	}
	return c.issue(withBearer(req, token))
}

// issue sends a login or rebind request and stores the token it answers.
func (c *Client) issue(req *http.Request) (string, *api.Session, error) {
	resp, err := c.send(req) //nolint:bodyclose // decode closes it
	if err != nil {
		return "", nil, err
	}
	var lr api.LoginResponse
	if err := decode(resp, &lr); err != nil {
		return "", nil, err
	}
	if lr.Token == "" {
		return "", nil, errors.New("tetherd answered without a token")
	}
	if !UsableToken(lr.Token) {
		return "", nil, errors.New("tetherd answered with something that cannot be a token")
	}
	if err := c.store.SaveToken(lr.Token); err != nil {
		return "", nil, fmt.Errorf("store the token: %w", err)
	}
	event := "client.login"
	if req.URL.Path == c.endpoint(api.PathRebind, nil).Path {
		event = "client.rebind"
	}
	c.log.Debug(event, "spiffe_id", lr.Session.SPIFFEID, "session_id", lr.Session.SessionID, "x5t#S256", lr.Session.CNF.X5TS256)
	return lr.Token, &lr.Session, nil
}

// send sends req over a connection made with the SVID the source holds now.
// Every request of the client goes out here, with its token or with the
// SVID alone, and every answer that redirects is refused here
// (an *Error with the 3xx status, the body closed): the client never follows a redirect,
// so a session token, or a token sent for introspection, reaches tetherd and
// nothing else.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	tr, err := c.transport()
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		drain(resp.Body)
		return nil, redirectRefused(resp.StatusCode, resp.Header.Get("Location"))
	}
	return resp, nil
}

// loadToken returns the stored token, or "" when there is none. What
// cannot be a token (see UsableToken) is none either: it is never sent (it
// could break the request's headers, or be refused as too large), and
// unusable says that the store holds it.
func (c *Client) loadToken() (token string, unusable bool, err error) {
	token, err = c.store.LoadToken()
	if err != nil {
		return "", false, fmt.Errorf("load the token: %w", err)
	}
	if token != "" && !UsableToken(token) {
		c.log.Debug("client.unusable_token", "server", c.base.String(), "bytes", len(token))
		return "", true, nil
	}
	return token, false, nil
}

func (c *Client) lockAuth(ctx context.Context) error {
	select {
	case c.auth <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) unlockAuth() { <-c.auth }

// sameServer reports whether req goes to tetherd: a token is never sent
// anywhere else.
func (c *Client) sameServer(req *http.Request) bool {
	return req.URL != nil && req.URL.Scheme == "https" && strings.EqualFold(req.URL.Host, c.base.Host)
}

// withBearer returns a copy of req with the token attached; req is not
// changed (http.RoundTripper must not modify its request).
func withBearer(req *http.Request, token string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// replayable reports whether req can be sent a second time.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewind returns a copy of req with a fresh body.
func rewind(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return r, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("replay the request body: %w", err)
	}
	r.Body = body
	return r, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
