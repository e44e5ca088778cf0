package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/render"
	"github.com/tetherproject/tether/internal/wirejson"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

// Config configures the API handler.
type Config struct {
	// Sessions is the session manager. Required.
	Sessions *session.Manager
	// Bundles are the trust bundles every caller's chain is verified
	// against, again whenever they change (see auth.Middleware.Bundles).
	// Required unless the TLS layer verifies client chains itself.
	Bundles x509bundle.Source
	// Admins may log in; Introspectors may call /v1/introspect. An empty
	// policy allows nobody.
	Admins, Introspectors auth.Policy
	// Logger receives internal errors; default silent. Security events are
	// logged by Sessions.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Registerer, if set, receives the HTTP metrics: requests by route,
	// method and status, and their duration by route.
	Registerer prometheus.Registerer
}

// Limits of the API's HTTP server.
const (
	// MaxHeaderBytes bounds a request's line and headers: a token is at
	// most 4 KiB (session.MaxTokenBytes), and no valid request needs more
	// than twice that. Beyond it, 431 headers_too_large, to the byte (see
	// boundHeaders). It is also http.Server.MaxHeaderBytes, with which
	// net/http itself refuses (431, in the JSON error format when served on
	// a Listener) what passes it by 4 to 8 KiB, before anything is parsed.
	MaxHeaderBytes    = 8 << 10
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	// IdleTimeout closes a kept-alive connection unused for this long.
	IdleTimeout = time.Minute
)

type handler struct {
	cfg Config
	log *slog.Logger
	mw  *auth.Middleware
}

// access is who may make a call: the route table's authorization column.
type access int

const (
	anyPeer      access = iota // a verified, unexpired client leaf
	admin                      // a peer matching an --admin pattern
	introspector               // a peer matching an --introspector pattern
	holder                     // a peer with a live session of its own (a bearer token)
	// holderOrSelf is a session holder; or, with no token at all, any peer
	// acting on its own SPIFFE ID (?spiffe_id= its own): an admin's SVID
	// alone can always end its own sessions, even at the per-identity cap.
	holderOrSelf
)

// route is one row of the routing table.
type route struct {
	method string
	// path is exact, or ends in "/{id}" for one trailing segment.
	path    string
	who     access
	handler auth.CallerHandler
	// body is true for the calls that deal with their body themselves (a
	// JSON body, or rebind, which authorizes before it looks at one); the
	// others have theirs bounded and discarded once the route's
	// authorization let the caller through.
	body bool
	// session are what a holder route needs of the session beyond its
	// binding (auth.AllowPending for logout).
	session []auth.SessionOption
}

// NewHandler returns the API's http.Handler.
func NewHandler(cfg Config) http.Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &handler{cfg: cfg, log: log, mw: &auth.Middleware{Sessions: cfg.Sessions, Bundles: cfg.Bundles, Logger: log, Now: cfg.Now}}
	routes := []route{
		{method: http.MethodPost, path: api.PathSessions, who: admin, handler: a.login, body: true},
		{method: http.MethodGet, path: api.PathSessions, who: holder, handler: a.list},
		{method: http.MethodDelete, path: api.PathSessions, who: holderOrSelf, handler: a.revokeIdentity},
		{method: http.MethodGet, path: api.PathSessionsSelf, who: holder, handler: a.self},
		// A session still waiting for approval may end itself.
		{method: http.MethodDelete, path: api.PathSessionsSelf, who: holder, handler: a.logout, session: []auth.SessionOption{auth.AllowPending()}},
		// Rebind cannot go through the session check: the token is, by
		// design, bound to the caller's old leaf. The Manager checks it,
		// and the handler bounds the body only after that (body: true).
		{method: http.MethodPost, path: api.PathRebind, who: anyPeer, handler: a.rebind, body: true},
		{method: http.MethodDelete, path: api.PathSessions + "/{id}", who: holder, handler: a.revoke},
		{method: http.MethodPost, path: api.PathIntrospect, who: introspector, handler: a.introspect, body: true},
		// Approvers are session holders; Decide checks the role's approvers.
		{method: http.MethodPost, path: api.PathSessions + "/{id}" + api.PathApprove, who: holder, handler: a.decide(true)},
		{method: http.MethodPost, path: api.PathSessions + "/{id}" + api.PathDeny, who: holder, handler: a.decide(false)},
	}
	rt := &router{log: log, metrics: newHTTPMetrics(cfg.Registerer), epoch: time.Now()}
	for _, ro := range routes {
		rt.routes = append(rt.routes, compiled{method: ro.method, path: ro.path, match: compilePath(ro.path), handler: a.authorize(ro),
			metrics: rt.metrics.forRoute(ro.path, ro.method)})
	}
	return rt
}

// authorize wraps a route's handler in its authorization, then the body
// bound: nothing of a body is read before the caller is authorized.
//
// The handlers are handed their Caller (auth.CallerHandler): the middleware
// then makes no copy of the request, which is most of what it would
// allocate per request. None of them keeps it past its return.
func (a *handler) authorize(ro route) http.Handler {
	h := ro.handler
	if !ro.body {
		next := h
		h = func(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
			if err := discardBody(w, r); err != nil {
				a.fail(w, r, err)
				return
			}
			next(w, r, c)
		}
	}
	switch ro.who {
	case holder:
		return a.mw.RequireSessionFunc(h, ro.session...)
	case holderOrSelf:
		withSession, self := a.mw.RequireSessionFunc(h), a.mw.RequirePeerFunc(a.ownIdentity(h))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.Header.Values("Authorization")) == 0 {
				self.ServeHTTP(w, r)
				return
			}
			withSession.ServeHTTP(w, r)
		})
	case admin:
		return a.mw.RequirePeerFunc(a.allowed(a.cfg.Admins, session.EventLoginDenied, api.CodeNotAdmin, "--admin", h))
	case introspector:
		return a.mw.RequirePeerFunc(a.allowed(a.cfg.Introspectors, session.EventIntrospectDenied, api.CodeForbidden, "--introspector", h))
	default:
		return a.mw.RequirePeerFunc(h)
	}
}

// allowed lets through a peer that policy allows; any other is denied with
// code, logged as event (one shape for every denial, see session.Deny).
func (a *handler) allowed(policy auth.Policy, event string, code api.Code, flag string, next auth.CallerHandler) auth.CallerHandler {
	return func(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
		if !policy.Allows(c.Peer.ID) {
			_ = a.cfg.Sessions.Deny(r.Context(), event, c.Peer, code, string(code)) // answered below, naming the flag
			a.fail(w, r, &api.Error{Code: code, Message: c.Peer.ID.String() + " matches no " + flag + " pattern"})
			return
		}
		next(w, r, c)
	}
}

// ownIdentity lets through a request without a token only when its
// ?spiffe_id= is the caller's own SPIFFE ID; any other needs a session.
func (a *handler) ownIdentity(next auth.CallerHandler) auth.CallerHandler {
	return func(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
		id, err := spiffeIDParam(r, true)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if *id != c.Peer.ID {
			a.fail(w, r, a.cfg.Sessions.Deny(r.Context(), session.EventRejected, c.Peer, api.CodeMissingToken, session.ReasonMissingToken))
			return
		}
		next(w, r, c)
	}
}

// compiled is a route with its authorization applied.
type compiled struct {
	method, path string
	match        pathPattern
	handler      http.Handler
	metrics      *routeMetrics
}

// router matches the table: a known path with another method is 405 with
// Allow; an unknown path is 404; both answered through render.
type router struct {
	routes  []compiled
	log     *slog.Logger
	metrics *httpMetrics
	// epoch is a reading of the monotonic clock that the durations are
	// measured from (see ServeHTTP).
	epoch time.Time
}

// ServeHTTP routes r, then counts it and logs it at debug level (route,
// status, duration).
func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A duration needs the monotonic clock only: time.Since(epoch) reads
	// just that one, where time.Now reads the wall clock too.
	start := time.Since(rt.epoch)
	sw := &statusWriter{ResponseWriter: w}
	ro := rt.route(sw, r)
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	took := time.Since(rt.epoch) - start
	route := "unmatched"
	if ro != nil {
		route = ro.path
		ro.metrics.observe(status, took)
	} else {
		rt.metrics.observe(route, r.Method, status, took)
	}
	if rt.log.Enabled(r.Context(), slog.LevelDebug) {
		rt.log.LogAttrs(r.Context(), slog.LevelDebug, "http.request", slog.String("route", route),
			slog.String("method", r.Method), slog.Int("status", status),
			slog.String("duration", took.String()), slog.String("remote_addr", r.RemoteAddr))
	}
}

// route serves r by the table and returns the route that served it (nil,
// "unmatched", for a 404 or 405).
func (rt *router) route(w http.ResponseWriter, r *http.Request) *compiled {
	var allow []string
	for i := range rt.routes {
		ro := &rt.routes[i]
		id, ok := ro.match.match(r.URL.Path)
		if !ok {
			continue
		}
		if ro.method != r.Method {
			allow = append(allow, ro.method)
			continue
		}
		if id != "" {
			r.SetPathValue("id", id)
		}
		ro.handler.ServeHTTP(w, r)
		return ro
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		render.Error(w, r, rt.log, &api.Error{Code: api.CodeMethodNotAllowed, Message: "method " + r.Method + " not allowed here"})
		return nil
	}
	render.Error(w, r, rt.log, &api.Error{Code: api.CodeNotFound, Message: "no such path"})
	return nil
}

// pathPattern is a route's path, split once: exact, or prefix + "/{id}" +
// suffix, which matches one more non-empty segment that is not a reserved
// name.
type pathPattern struct {
	exact, prefix, suffix string
	param                 bool
}

func compilePath(pattern string) pathPattern {
	prefix, suffix, param := strings.Cut(pattern, "/{id}")
	if !param {
		return pathPattern{exact: pattern}
	}
	return pathPattern{prefix: prefix + "/", suffix: suffix, param: true}
}

// match reports whether path matches, and the {id} segment if the pattern
// has one.
func (p pathPattern) match(path string) (string, bool) {
	if !p.param {
		return "", p.exact == path
	}
	rest, ok := strings.CutPrefix(path, p.prefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, p.suffix)
	if !ok || id == "" || strings.Contains(id, "/") || id == "self" {
		return "", false
	}
	return id, true
}

func (a *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	render.Error(w, r, a.log, err)
}

// login opens a session for an --admin peer (the route table checked it),
// with the roles its optional body asks for.
func (a *handler) login(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
	var req api.LoginRequest
	if err := decodeOptionalBody(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, info, err := a.cfg.Sessions.Login(r.Context(), c.Peer, req.Roles...)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	answerLogin(w, http.StatusCreated, &api.LoginResponse{Token: tok, Session: Wire(info)})
}

func (a *handler) self(w http.ResponseWriter, _ *http.Request, c *auth.Caller) {
	answerSession(w, http.StatusOK, &api.SessionResponse{Session: Wire(c.Session)})
}

// bufs hold the answers that answerSession and answerLogin encode.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// answerSession writes v as render.JSON would, encoded by wirejson (no
// reflection), or by render.JSON itself when wirejson declines.
func answerSession(w http.ResponseWriter, status int, v *api.SessionResponse) {
	buf := bufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds *[]byte only
	b, ok := wirejson.AppendSessionResponse((*buf)[:0], v)
	if ok {
		render.Encoded(w, status, append(b, '\n'))
	} else {
		render.JSON(w, status, *v) // a copy: v itself stays on the stack
	}
	*buf = b[:0]
	bufs.Put(buf)
}

// answerLogin is answerSession for a login or a rebind.
func answerLogin(w http.ResponseWriter, status int, v *api.LoginResponse) {
	buf := bufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds *[]byte only
	b, ok := wirejson.AppendLoginResponse((*buf)[:0], v)
	if ok {
		render.Encoded(w, status, append(b, '\n'))
	} else {
		render.JSON(w, status, *v) // a copy: v itself stays on the stack
	}
	*buf = b[:0]
	bufs.Put(buf)
}

func (a *handler) logout(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
	if err := a.cfg.Sessions.Logout(r.Context(), c.Session.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rebind moves the caller's session to its new leaf.
func (a *handler) rebind(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
	token, err := auth.BearerToken(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// The token authorizes a rebind: it is checked before a byte of the
	// body (none is expected) is read.
	peer := c.Peer
	if err := a.cfg.Sessions.CheckRebind(r.Context(), token, peer); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := discardBody(w, r); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, info, err := a.cfg.Sessions.Rebind(r.Context(), token, peer)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	answerLogin(w, http.StatusOK, &api.LoginResponse{Token: tok, Session: Wire(info)})
}

func (a *handler) list(w http.ResponseWriter, r *http.Request, _ *auth.Caller) {
	filter, err := spiffeIDParam(r, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	infos, err := a.cfg.Sessions.List(filter)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := api.SessionsResponse{Sessions: make([]api.Session, 0, len(infos))}
	for _, in := range infos {
		out.Sessions = append(out.Sessions, Wire(in))
	}
	render.JSON(w, http.StatusOK, out)
}

// revokedBy is r's context with the caller among the attributes of the
// events its revocations log (session.revoked, session.ended), which name
// the session's owner: by_spiffe_id, by_fingerprint and, with a token,
// by_session_id. Nothing an admin ends escapes the log.
func (a *handler) revokedBy(r *http.Request, c *auth.Caller) context.Context {
	attrs := []slog.Attr{slog.String("by_spiffe_id", c.Peer.ID.String()), slog.String("by_fingerprint", c.Peer.Fingerprint)}
	if c.Session.ID != "" {
		attrs = append(attrs, slog.String("by_session_id", c.Session.ID))
	}
	return session.WithLogAttrs(r.Context(), attrs...)
}

func (a *handler) revoke(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
	if err := a.cfg.Sessions.Revoke(a.revokedBy(r, c), r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *handler) revokeIdentity(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
	id, err := spiffeIDParam(r, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.cfg.Sessions.RevokeIdentity(a.revokedBy(r, c), *id)
	if err != nil {
		a.fail(w, r, err) // those ended before the failure stay ended
		return
	}
	render.JSON(w, http.StatusOK, api.RevokeResponse{Revoked: n})
}

// introspect answers an --introspector peer (the route table checked it)
// whether a token is live and bound to the given fingerprint.
func (a *handler) introspect(w http.ResponseWriter, r *http.Request, _ *auth.Caller) {
	var req api.IntrospectRequest
	if err := decodeBody(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Token == "" || req.CNF.X5TS256 == "" {
		a.fail(w, r, &api.Error{Code: api.CodeBadRequest, Message: `"token" and "cnf"."x5t#S256" are required`})
		return
	}
	if err := a.cfg.Sessions.Fresh(); err != nil {
		a.fail(w, r, err) // "inactive" from a stale view could be a lie either way
		return
	}
	info, ok := a.cfg.Sessions.Introspect(r.Context(), req.Token, req.CNF.X5TS256)
	if !ok {
		render.JSON(w, http.StatusOK, api.IntrospectResponse{Active: false})
		return
	}
	s := Wire(info)
	render.JSON(w, http.StatusOK, api.IntrospectResponse{Active: true, Session: &s})
}

// discardBody enforces the body bound on calls that take no body: after
// authorization, a body over api.MaxBodyBytes is 413; a smaller one is read
// and ignored.
func discardBody(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	return copyBody(io.Discard, w, r)
}

var errTooBig = &api.Error{Code: api.CodePayloadTooLarge, Message: "the body is over 64 KiB"}

// decide approves or denies the pending session in the path, as the caller.
func (a *handler) decide(approve bool) auth.CallerHandler {
	return func(w http.ResponseWriter, r *http.Request, c *auth.Caller) {
		info, err := a.cfg.Sessions.Decide(r.Context(), r.PathValue("id"), c.Peer, approve)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		answerSession(w, http.StatusOK, &api.SessionResponse{Session: Wire(info)})
	}
}

// decodeOptionalBody is decodeBody for a call whose body may be absent or
// empty: then v is left as it is.
func decodeOptionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	raw, err := readBody(w, r)
	if err != nil || len(bytes.TrimSpace(raw)) == 0 {
		return err
	}
	return decodeJSON(raw, v)
}

// decodeBody reads one JSON object of at most api.MaxBodyBytes: a larger
// body is 413 whatever it holds, anything else that is not one JSON object of
// the expected shape is 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	raw, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(raw, v)
}

// readBody reads a body of at most api.MaxBodyBytes (413 beyond).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if err := copyBody(&buf, w, r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// copyBody copies a body of at most api.MaxBodyBytes to dst: beyond, 413
// (declared or read); a body that cannot be read, 400.
func copyBody(dst io.Writer, w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > api.MaxBodyBytes {
		return errTooBig
	}
	if _, err := io.Copy(dst, http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooBig
		}
		return &api.Error{Code: api.CodeBadRequest, Message: "the body could not be read"}
	}
	return nil
}

// decodeJSON decodes exactly one JSON object of v's shape from raw.
func decodeJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return &api.Error{Code: api.CodeBadRequest, Message: "the body is not a valid JSON object of the expected shape"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &api.Error{Code: api.CodeBadRequest, Message: "unexpected data after the JSON object"}
	}
	return nil
}

// spiffeIDParam reads ?spiffe_id=; required or optional.
//
// The query is parsed strictly: a malformed one (a bad %-escape, a ';'),
// or a parameter other than spiffe_id, is 400 bad_request, never read as
// no filter (which would list every session).
func spiffeIDParam(r *http.Request, required bool) (*spiffeid.ID, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "malformed query string"}
	}
	for k := range q {
		if k != api.QuerySPIFFEID {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "unknown query parameter: only spiffe_id is taken"}
		}
	}
	vals, present := q[api.QuerySPIFFEID]
	if !present {
		if required {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "spiffe_id is required"}
		}
		return nil, nil
	}
	if len(vals) != 1 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "spiffe_id given more than once"}
	}
	id, err := spiffeid.FromString(vals[0])
	if err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "spiffe_id is not a valid SPIFFE ID"}
	}
	return &id, nil
}

// Wire turns a session into its API object.
func Wire(in session.Info) api.Session {
	s := api.Session{
		SessionID:       in.ID,
		SPIFFEID:        in.SPIFFEID.String(),
		CNF:             api.CNF{X5TS256: in.Fingerprint},
		CreatedAt:       in.CreatedAt,
		LastUsedAt:      in.LastUsedAt,
		ExpiresAt:       in.ExpiresAt,
		IdleExpiresAt:   in.IdleExpiresAt,
		Roles:           in.Roles,
		State:           in.State,
		Approvals:       make([]api.Approval, 0, len(in.Approvals)),
		AuthenticatedAt: in.AuthenticatedAt,
	}
	if s.Roles == nil {
		s.Roles = []string{}
	}
	if s.State == "" {
		s.State = api.StateActive
	}
	for _, a := range in.Approvals {
		s.Approvals = append(s.Approvals, api.Approval{SPIFFEID: a.SPIFFEID.String(), At: a.At})
	}
	return s
}
