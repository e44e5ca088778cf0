// Package secrets is an example, read like SPIKE Nexus: a small secrets API
// that hosts tether's admin sessions itself (packages session, auth and
// server) and puts its own calls behind them. Reading needs a session,
// writing needs the role "write", and "restore" (SPIKE's break-glass
// operation) needs the role "restore" — which an operator configures with
// two approvals, so a second person must approve the session — and a login
// younger than five minutes (RFC 9470 step-up). Every call's audit line
// names the identity and the session.
package secrets

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
)

// RestoreMaxAge is how fresh a login "restore" needs.
const RestoreMaxAge = 5 * time.Minute

// New returns the service's handler: tether's session API under
// /v1/sessions (login, approve, …) and the secrets calls under /v1/secrets.
func New(sessions *session.Manager, bundles x509bundle.Source, admins auth.Policy, log *slog.Logger) http.Handler {
	s := &store{data: map[string]string{}, log: log}
	mw := &auth.Middleware{Sessions: sessions, Bundles: bundles, Logger: log}
	api := server.NewHandler(server.Config{Sessions: sessions, Bundles: bundles, Admins: admins, Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/v1/sessions", api)
	mux.Handle("/v1/sessions/", api)
	mux.Handle("GET /v1/secrets/{name}", mw.RequireSession(http.HandlerFunc(s.read)))
	mux.Handle("PUT /v1/secrets/{name}", mw.RequireSession(http.HandlerFunc(s.write), auth.WithRole("write")))
	mux.Handle("POST /v1/restore", mw.RequireSession(http.HandlerFunc(s.restore), auth.WithRole("restore"), auth.WithFreshLogin(RestoreMaxAge)))
	return mux
}

type store struct {
	mu   sync.Mutex
	data map[string]string
	log  *slog.Logger
}

// audit logs who did what in which session: the middleware's Caller
// carries the SPIFFE ID, the session ID and the roles.
func (s *store) audit(r *http.Request, op string) {
	c, _ := auth.CallerFrom(r.Context())
	s.log.Info("secrets.audit", slog.String("op", op), slog.String("spiffe_id", c.Peer.ID.String()),
		slog.String("session_id", c.Session.ID), slog.Any("roles", c.Session.Roles))
}

func (s *store) read(w http.ResponseWriter, r *http.Request) {
	s.audit(r, "read")
	s.mu.Lock()
	v, ok := s.data[r.PathValue("name")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"value": v})
}

func (s *store) write(w http.ResponseWriter, r *http.Request) {
	s.audit(r, "write")
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		http.Error(w, "value too large", http.StatusRequestEntityTooLarge)
		return
	}
	s.mu.Lock()
	s.data[r.PathValue("name")] = string(b)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *store) restore(w http.ResponseWriter, r *http.Request) {
	s.audit(r, "restore")
	s.mu.Lock()
	clear(s.data)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
