package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/render"
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
	// Logger receives security events and internal errors; default silent.
	Logger *slog.Logger
	// Metrics counts refusals; optional.
	Metrics *session.Metrics
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Limits of the API's HTTP server.
const (
	// MaxHeaderBytes bounds a request's headers: a token is at most 4 KiB
	// (session.MaxTokenBytes), and no valid request needs more than twice
	// that. net/http reads up to MaxHeaderBytes+4096 bytes before it answers
	// 431 (in the JSON error format when served on a Listener).
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

// route is one row of the routing table.
type route struct {
	method string
	// path is exact, or ends in "/{id}" for one trailing segment.
	path    string
	handler http.Handler
}

// NewHandler returns the API's http.Handler.
func NewHandler(cfg Config) http.Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &handler{cfg: cfg, log: log, mw: &auth.Middleware{Sessions: cfg.Sessions, Bundles: cfg.Bundles, Logger: log, Metrics: cfg.Metrics, Now: cfg.Now}}
	peer := a.mw.RequirePeer
	// Calls with a session take no body; its bound is enforced once the
	// session is checked (authorization before any body is read).
	sess := func(h http.HandlerFunc) http.Handler {
		return a.mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := discardBody(w, r); err != nil {
				a.fail(w, r, err)
				return
			}
			h(w, r)
		}))
	}
	routes := []route{
		{http.MethodPost, api.PathSessions, peer(http.HandlerFunc(a.login))},
		{http.MethodGet, api.PathSessions, sess(a.list)},
		{http.MethodDelete, api.PathSessions, sess(a.revokeIdentity)},
		{http.MethodGet, api.PathSessionsSelf, sess(a.self)},
		{http.MethodDelete, api.PathSessionsSelf, sess(a.logout)},
		{http.MethodPost, api.PathRebind, peer(http.HandlerFunc(a.rebind))},
		{http.MethodDelete, api.PathSessions + "/{id}", sess(a.revoke)},
		{http.MethodPost, api.PathIntrospect, peer(http.HandlerFunc(a.introspect))},
	}
	return &router{routes: routes, log: log}
}

// router matches the table: a known path with another method is 405 with
// Allow; an unknown path is 404; both answered through render.
type router struct {
	routes []route
	log    *slog.Logger
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, ro := range rt.routes {
		id, ok := matchPath(ro.path, r.URL.Path)
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
		return
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		render.Error(w, r, rt.log, &api.Error{Code: api.CodeMethodNotAllowed, Message: "method " + r.Method + " not allowed here"})
		return
	}
	render.Error(w, r, rt.log, &api.Error{Code: api.CodeNotFound, Message: "no such path"})
}

// matchPath matches an exact pattern, or one ending in "/{id}" against a
// path with one more non-empty segment that is not a reserved name.
func matchPath(pattern, path string) (string, bool) {
	prefix, isParam := strings.CutSuffix(pattern, "/{id}")
	if !isParam {
		return "", pattern == path
	}
	id, ok := strings.CutPrefix(path, prefix+"/")
	if !ok || id == "" || strings.Contains(id, "/") || id == "self" {
		return "", false
	}
	return id, true
}

func (a *handler) caller(r *http.Request) *auth.Caller {
	c, _ := auth.CallerFrom(r.Context())
	return c
}

func (a *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	render.Error(w, r, a.log, err)
}

// login opens a session for an --admin peer. Authorization comes first; the
// body is never read.
func (a *handler) login(w http.ResponseWriter, r *http.Request) {
	c := a.caller(r)
	if !a.cfg.Admins.Allows(c.Peer.ID) {
		a.cfg.Metrics.LoginDenied(string(api.CodeNotAdmin))
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "login.denied",
			slog.String("reason", string(api.CodeNotAdmin)), slog.String("spiffe_id", c.Peer.ID.String()),
			slog.String("fingerprint", c.Peer.Fingerprint), slog.String("remote_addr", r.RemoteAddr))
		a.fail(w, r, &api.Error{Code: api.CodeNotAdmin, Message: c.Peer.ID.String() + " matches no --admin pattern"})
		return
	}
	if err := discardBody(w, r); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, info, err := a.cfg.Sessions.Login(r.Context(), c.Peer.Peer)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	render.JSON(w, http.StatusCreated, api.LoginResponse{Token: tok, Session: Wire(info)})
}

func (a *handler) self(w http.ResponseWriter, r *http.Request) {
	render.JSON(w, http.StatusOK, api.SessionResponse{Session: Wire(a.caller(r).Session)})
}

func (a *handler) logout(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Sessions.Logout(r.Context(), a.caller(r).Session.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rebind moves the caller's session to its new leaf. It cannot go through
// RequireSession: the token is, by design, bound to the caller's old leaf.
func (a *handler) rebind(w http.ResponseWriter, r *http.Request) {
	c := a.caller(r)
	token, err := auth.BearerToken(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := discardBody(w, r); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, info, err := a.cfg.Sessions.Rebind(r.Context(), token, c.Peer.Peer)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	render.JSON(w, http.StatusOK, api.LoginResponse{Token: tok, Session: Wire(info)})
}

func (a *handler) list(w http.ResponseWriter, r *http.Request) {
	filter, err := spiffeIDParam(r, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	infos := a.cfg.Sessions.List(filter)
	out := api.SessionsResponse{Sessions: make([]api.Session, 0, len(infos))}
	for _, in := range infos {
		out.Sessions = append(out.Sessions, Wire(in))
	}
	render.JSON(w, http.StatusOK, out)
}

func (a *handler) revoke(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Sessions.Revoke(r.Context(), r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *handler) revokeIdentity(w http.ResponseWriter, r *http.Request) {
	id, err := spiffeIDParam(r, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n := a.cfg.Sessions.RevokeIdentity(r.Context(), *id)
	render.JSON(w, http.StatusOK, api.RevokeResponse{Revoked: n})
}

// introspect answers an --introspector peer whether a token is live and bound
// to the given fingerprint. Authorization comes before the body is read.
func (a *handler) introspect(w http.ResponseWriter, r *http.Request) {
	c := a.caller(r)
	if !a.cfg.Introspectors.Allows(c.Peer.ID) {
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "introspect.denied",
			slog.String("spiffe_id", c.Peer.ID.String()), slog.String("remote_addr", r.RemoteAddr))
		a.fail(w, r, &api.Error{Code: api.CodeForbidden, Message: c.Peer.ID.String() + " matches no --introspector pattern"})
		return
	}
	var req api.IntrospectRequest
	if err := decodeBody(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Token == "" || req.CNF.X5TS256 == "" {
		a.fail(w, r, &api.Error{Code: api.CodeBadRequest, Message: `"token" and "cnf"."x5t#S256" are required`})
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
	if r.ContentLength > api.MaxBodyBytes {
		return errTooBig
	}
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooBig
		}
		return &api.Error{Code: api.CodeBadRequest, Message: "the body could not be read"}
	}
	return nil
}

var errTooBig = &api.Error{Code: api.CodePayloadTooLarge, Message: "the body is over 64 KiB"}

// decodeBody reads one JSON object of at most api.MaxBodyBytes: a larger
// body is 413 whatever it holds, anything else that is not one JSON object of
// the expected shape is 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > api.MaxBodyBytes {
		return errTooBig
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooBig
		}
		return &api.Error{Code: api.CodeBadRequest, Message: "the body could not be read"}
	}
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
func spiffeIDParam(r *http.Request, required bool) (*spiffeid.ID, error) {
	q := r.URL.Query()
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
	return api.Session{
		SessionID:     in.ID,
		SPIFFEID:      in.SPIFFEID.String(),
		CNF:           api.CNF{X5TS256: in.Fingerprint},
		CreatedAt:     in.CreatedAt,
		LastUsedAt:    in.LastUsedAt,
		ExpiresAt:     in.ExpiresAt,
		IdleExpiresAt: in.IdleExpiresAt,
	}
}
