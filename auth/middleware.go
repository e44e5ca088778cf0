package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/tetherproject/tether/internal/render"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// Caller is what the middleware hands a handler: the verified peer (its
// SPIFFE ID, leaf fingerprint and validity) and, under RequireSession, its
// live session.
type Caller struct {
	Peer    session.Peer
	Session session.Info
	// Token is the bearer token of the request; handlers must never log it.
	Token string
}

type callerKey struct{}

// CallerFrom returns the caller the middleware put in ctx.
func CallerFrom(ctx context.Context) (*Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	return c, ok
}

// Middleware enforces the session binding in front of HTTP handlers.
type Middleware struct {
	// Sessions checks the tokens, and logs and counts the refusals decided
	// here. Required by RequireSession; with RequirePeer alone, refusals are
	// answered but not logged when it is nil.
	Sessions *session.Manager
	// Bundles are the trust bundles every caller's chain must verify
	// against. The middleware verifies a connection's chain once, and again
	// whenever the bundle of the caller's trust domain changes (a CA removed,
	// a federated trust domain dropped), so an open connection is never
	// trusted longer than its CA. With Bundles nil, the middleware accepts
	// only peers that the TLS layer itself verified (tls.Config with
	// RequireAndVerifyClientCert: Request.TLS.VerifiedChains non-empty) and
	// refuses every other request, so that a server configured with
	// RequireAnyClientCert cannot silently trust any certificate.
	Bundles x509bundle.Source
	// OnError answers a refusal. The default writes tether's JSON error
	// format (with WWW-Authenticate on 401s); an embedder with its own error
	// format sets it. errors.As(err, &e) with e an interface{ APIError()
	// *api.Error } gives the contract's code and public message.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives the misconfiguration and internal-error events;
	// default silent. Refusals are logged by Sessions.
	Logger *slog.Logger
	// Now is the clock for the leaf expiry check; default time.Now.
	Now func() time.Time

	unverifiedOnce sync.Once
}

func (m *Middleware) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Middleware) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// fail answers err with OnError, or in tether's JSON format.
func (m *Middleware) fail(w http.ResponseWriter, r *http.Request, err error) {
	if m.OnError != nil {
		m.OnError(w, r, err)
		return
	}
	render.Error(w, r, m.Logger, err)
}

// RequirePeer lets a request through only with a verified, unexpired client
// leaf; the handler finds the Caller (without session) in the context.
func (m *Middleware) RequirePeer(next http.Handler) http.Handler {
	return m.requirePeer(false, func(w http.ResponseWriter, r *http.Request, _ *Caller) { next.ServeHTTP(w, r) })
}

// CallerHandler is a handler that is handed its Caller as an argument, by
// RequirePeerFunc and RequireSessionFunc, instead of finding it in the
// request's context (CallerFrom finds nothing there). The Caller and the
// ResponseWriter are lent for the call and reused once it returns: neither
// may be kept, nor used by a goroutine that outlives the call. In exchange,
// the middleware makes no copy of the request and allocates nothing for
// it, on a connection served by a server that set ConnContext.
type CallerHandler func(w http.ResponseWriter, r *http.Request, c *Caller)

// RequirePeerFunc is RequirePeer for a CallerHandler.
func (m *Middleware) RequirePeerFunc(next CallerHandler) http.Handler {
	return m.requirePeer(true, next)
}

func (m *Middleware) requirePeer(lend bool, next CallerHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, q, ok := m.peer(w, r, lend)
		if ok {
			next(w, r, &q.caller)
			q.release()
		}
	})
}

// RequireSession lets a request through only with `Authorization: Bearer
// TOKEN` naming a live session of the caller's SPIFFE ID bound to the
// caller's leaf. The refusal is 401 with the contract's code; the detailed
// codes (session_ended, certificate_rotated) go only to the session's own
// SPIFFE ID. The handler finds the Caller with its session in the context.
// The request counts as a use of the session (its idle clock restarts) only
// if the handler answers with a 2xx status.
//
// Options add what the handler needs beyond a session: WithRole (403
// role_required without it) and WithFreshLogin (401
// insufficient_user_authentication, RFC 9470, for an older login).
func (m *Middleware) RequireSession(next http.Handler, opts ...SessionOption) http.Handler {
	return m.requireSession(false, func(w http.ResponseWriter, r *http.Request, _ *Caller) { next.ServeHTTP(w, r) }, opts)
}

// RequireSessionFunc is RequireSession for a CallerHandler.
func (m *Middleware) RequireSessionFunc(next CallerHandler, opts ...SessionOption) http.Handler {
	return m.requireSession(true, next, opts)
}

func (m *Middleware) requireSession(lend bool, next CallerHandler, opts []SessionOption) http.Handler {
	var need sessionNeeds
	for _, o := range opts {
		o(&need)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, q, ok := m.peer(w, r, lend)
		if !ok {
			return
		}
		c := &q.caller
		mark, ok := m.session(w, r, c, q.memo, need)
		if !ok {
			q.release()
			return
		}
		uw := &q.uw
		uw.ResponseWriter, uw.use = w, mark
		next(uw, r, c)
		uw.answered(http.StatusOK) // a handler that wrote nothing answered 200
		q.release()
	})
}

// session checks the request's bearer token against c's peer and need,
// puts the session in c and returns what commits its use; a refusal is
// answered, and false. memo is the connection's TokenMemo, if any.
func (m *Middleware) session(w http.ResponseWriter, r *http.Request, c *Caller, memo *session.TokenMemo, need sessionNeeds) (session.UseMark, bool) {
	token, err := bearer(r)
	if err != nil {
		m.deny(w, r, c.Peer, err)
		return session.UseMark{}, false
	}
	use, err := m.Sessions.CheckWith(r.Context(), token, c.Peer, session.CheckOptions{AllowPending: need.pending, Memo: memo})
	if err != nil {
		m.fail(w, r, err) // the Manager logged and counted it
		return session.UseMark{}, false
	}
	c.Session, c.Token = use.Info, token
	if err := m.meets(r, c, need); err != nil {
		// The refusal is of a known session: its line names it.
		m.deny(w, r.WithContext(session.WithLogAttrs(r.Context(), slog.String("session_id", c.Session.ID))), c.Peer, err)
		return session.UseMark{}, false
	}
	return use.Mark(), true
}

// SessionOption is what a handler needs of a session beyond its binding.
type SessionOption func(*sessionNeeds)

type sessionNeeds struct {
	roles   []string
	maxAge  time.Duration // 0: any login
	pending bool          // a session waiting for approval is let through
}

// WithRole requires the session to hold role; each use is logged
// (role.used, naming the identity, the session and the role), so an audit
// log can say who did what in which session.
func WithRole(role string) SessionOption {
	return func(n *sessionNeeds) { n.roles = append(n.roles, role) }
}

// AllowPending lets through a session that still waits for approval (its
// token is otherwise refused with approval_pending), for calls it may make,
// such as ending itself.
func AllowPending() SessionOption {
	return func(n *sessionNeeds) { n.pending = true }
}

// WithFreshLogin requires the session's login (its authenticated_at) to be
// at most maxAge old: RFC 9470's step-up. The refusal's WWW-Authenticate
// carries max_age, and the client logs in again.
func WithFreshLogin(maxAge time.Duration) SessionOption {
	return func(n *sessionNeeds) { n.maxAge = maxAge }
}

// meets checks the options against the caller's session.
func (m *Middleware) meets(r *http.Request, c *Caller, need sessionNeeds) error {
	for _, role := range need.roles {
		if !slices.Contains(c.Session.Roles, role) {
			return &session.Error{Code: api.CodeRoleRequired, Reason: "role_required",
				Detail: "this call needs a session with role " + role + ": tether login --role " + role}
		}
	}
	// LastUsedAt is the time of this check, on the Manager's clock.
	if need.maxAge > 0 && c.Session.LastUsedAt.Sub(c.Session.AuthenticatedAt) > need.maxAge {
		return &stepUp{maxAge: need.maxAge}
	}
	for _, role := range need.roles {
		m.logger().LogAttrs(r.Context(), slog.LevelInfo, "role.used", slog.String("role", role),
			slog.String("spiffe_id", c.Peer.ID.String()), slog.String("session_id", c.Session.ID),
			slog.String("fingerprint", c.Peer.Fingerprint), slog.String("method", r.Method), slog.String("path", r.URL.Path))
	}
	return nil
}

// stepUp is the refusal of a login older than a call allows (RFC 9470).
type stepUp struct{ maxAge time.Duration }

func (e *stepUp) Error() string { return "auth: the login is older than " + e.maxAge.String() }

// APIError is the refusal as it is answered.
func (e *stepUp) APIError() *api.Error {
	return &api.Error{Code: api.CodeInsufficientAuth, Message: "this call needs a login younger than " + e.maxAge.String() + ": log in again"}
}

// WWWAuthenticate is RFC 9470's challenge with the max_age hint.
func (e *stepUp) WWWAuthenticate() string {
	return api.StepUpChallenge(int64(e.maxAge / time.Second))
}

// useWriter records the session's use once the handler answers with a 2xx,
// and only then: a failed request does not keep a session alive.
type useWriter struct {
	http.ResponseWriter
	use  session.UseMark
	done bool
}

func (w *useWriter) answered(status int) {
	if w.done || status < 200 {
		return
	}
	w.done = true
	if status < 300 {
		w.use.Commit()
	}
}

func (w *useWriter) WriteHeader(status int) {
	w.answered(status)
	w.ResponseWriter.WriteHeader(status)
}

func (w *useWriter) Write(b []byte) (int, error) {
	w.answered(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *useWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// peer verifies the caller's leaf and returns where its Caller lives, and
// the request the handler is given. A refused peer's connection is closed,
// so its client reconnects with its current SVID.
//
// With lend, on a connection whose peer ConnContext caches (which also put
// the remote address among the log attributes), the Caller is lent from a
// pool and the request is r itself. Otherwise the Caller is put in a copy
// of r's context (CallerFrom), made for this request.
func (m *Middleware) peer(w http.ResponseWriter, r *http.Request, lend bool) (*http.Request, *request, bool) {
	p, chain, cp, err := peerFromRequest(r, m.now())
	if err == nil {
		err = m.verified(r, p, chain, cp)
	}
	if err != nil {
		w.Header().Set("Connection", "close")
		m.deny(w, r, p, err)
		return r, nil, false
	}
	if lend && cp != nil {
		q := lent.Get().(*request) //nolint:forcetypeassert // the pool holds *request only
		q.lent, q.caller.Peer, q.memo = true, p, &cp.memo
		return r, q, true
	}
	ctx := r.Context()
	var memo *session.TokenMemo
	if cp == nil { // else ConnContext added the remote address
		ctx = withRemoteAddr(r)
	} else {
		memo = &cp.memo
	}
	q := &request{Context: ctx, caller: Caller{Peer: p}, memo: memo}
	// What r.WithContext(q) returns, held in q: WithContext is inlined, so
	// its copy of r stays on the stack and is copied into q, and the
	// request costs one allocation instead of two.
	q.r = *r.WithContext(q)
	return &q.r, q, true
}

// request is what the middleware keeps for one request, in one allocation:
// the Caller and the ResponseWriter that commits a session's use; and,
// unless the Caller is lent (see peer), the request's context (the Caller
// is its value for callerKey) and the *http.Request carrying that context
// which the handler is given (a shallow copy of the middleware's own, as
// WithContext makes).
type request struct {
	context.Context
	caller Caller
	uw     useWriter
	r      http.Request
	lent   bool // from the pool lent, to go back to it
	// memo is the TokenMemo of the request's connection (ConnContext's),
	// nil without one.
	memo *session.TokenMemo
}

// lent holds the requests of CallerHandlers, whose Caller and
// ResponseWriter live only as long as the call.
var lent = sync.Pool{New: func() any { return new(request) }}

// release returns a lent request to the pool, cleared; a request whose
// Caller is in a context may outlive the call, and is left to the GC. A
// handler that panics never gets here: its request is not reused.
func (q *request) release() {
	if q.lent {
		q.caller, q.uw, q.lent, q.memo = Caller{}, useWriter{}, false, nil
		lent.Put(q)
	}
}

// Value implements context.Context: the Caller, or the parent's values.
func (q *request) Value(key any) any {
	if _, ok := key.(callerKey); ok {
		return &q.caller
	}
	return q.Context.Value(key)
}

// withRemoteAddr is r's context with the remote address among the
// attributes of the security events it logs. ConnContext adds it once per
// connection; without it, it is added here, once per request.
func withRemoteAddr(r *http.Request) context.Context {
	ctx := r.Context()
	if _, ok := ctx.Value(connKey{}).(*connPeer); ok {
		return ctx
	}
	if _, ok := ctx.Value(callerKey{}).(*Caller); ok { // peer added it
		return ctx
	}
	return session.WithLogAttrs(ctx, slog.String("remote_addr", r.RemoteAddr))
}

// verified checks that the caller's chain is trusted now: against Bundles,
// or, without them, by the TLS layer's own verification.
func (m *Middleware) verified(r *http.Request, p session.Peer, chain []*x509.Certificate, cp *connPeer) error {
	if m.Bundles != nil {
		return verifyChain(cp, chain, p.ID.TrustDomain(), m.Bundles)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return nil
	}
	m.unverifiedOnce.Do(func() {
		m.logger().LogAttrs(r.Context(), slog.LevelError, "auth.misconfigured",
			slog.String("detail", "Middleware.Bundles is nil and the TLS layer did not verify the client chain: every request is refused"))
	})
	return refusePeer(reasonUnverified, "the client certificate was not verified")
}

// deny logs and counts (through Sessions) and answers a refusal decided by
// the middleware.
func (m *Middleware) deny(w http.ResponseWriter, r *http.Request, p session.Peer, err error) {
	if m.Sessions != nil {
		code, reason := api.CodeInvalidToken, reasonNoCertificate
		var se *session.Error
		var pe *peerRefusal
		var ae *api.Error
		var su *stepUp
		switch {
		case errors.As(err, &se):
			code, reason = se.Code, se.Reason
		case errors.As(err, &pe):
			reason = pe.reason
		case errors.As(err, &su):
			code, reason = api.CodeInsufficientAuth, "stale_login"
		case errors.As(err, &ae):
			code, reason = ae.Code, string(ae.Code)
		}
		_ = m.Sessions.Deny(withRemoteAddr(r), session.EventRejected, p, code, reason) // err is answered below, with its own message
	}
	m.fail(w, r, err)
}

// BearerToken returns the token of the request's single `Authorization:
// Bearer` header. Tokens are never taken from a query string, cookie or body.
// No header or another scheme is 401 missing_token; two headers are 400
// bad_request; a token with characters outside the JWS alphabet is 401
// invalid_token.
func BearerToken(r *http.Request) (string, error) {
	token, err := bearer(r)
	if err == nil && !session.InJWSAlphabet(token) {
		return "", errMalformedToken
	}
	return token, err
}

// bearer is BearerToken without the look at the token's characters:
// RequireSession hands the token to the Manager as it is, whose refusal
// path calls a token outside the alphabet malformed, as BearerToken would;
// the token of an accepted request is then read once (by its hash), not
// twice.
func bearer(r *http.Request) (string, error) {
	values := r.Header["Authorization"] // the canonical key: what Values would look up
	switch len(values) {
	case 0:
		return "", errMissingToken
	case 1:
	default:
		return "", &api.Error{Code: api.CodeBadRequest, Message: "more than one Authorization header"}
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errMissingToken
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", errMalformedToken
	}
	return token, nil
}

// The bearer-token refusals decided here; session.Error words their answers.
var (
	errMissingToken   = &session.Error{Code: api.CodeMissingToken, Reason: session.ReasonMissingToken}
	errMalformedToken = &session.Error{Code: api.CodeInvalidToken, Reason: session.ReasonMalformed}
)
