package client_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// fakeTetherd is the package's one stand-in for tetherd: it follows the
// contract's rules for sessions, tokens and bindings (a peer may revoke its
// own sessions with its SVID alone), and counts and records what it is
// asked. A test can make it answer with a redirect, or act as a tetherd that
// wants a token to revoke. The tests of the real tetherd and CLI are in
// cmd/tether.
type fakeTetherd struct {
	t   *testing.T
	srv *httptest.Server
	ca  *testpki.CA
	id  spiffeid.ID

	mu       sync.Mutex
	tokens   map[string]string // token -> session ID
	sessions map[string]*api.Session
	ended    map[string]bool // session ID -> ended
	order    []string
	// counters
	logins, rebinds int
	hits            map[string]int // "METHOD path" -> requests
	peerFPs         []string       // fingerprint of the client leaf of every request
	seen            []seenRequest
	// alwaysEnded makes every request with a token answer session_ended.
	alwaysEnded bool
	// tokenToRevoke makes it a tetherd older than SVID-alone revocation: a
	// revocation without a token is missing_token.
	tokenToRevoke bool
	// redirect, if set, says which requests are answered with a redirect of
	// status redirectStatus to redirectTo.
	redirect       func(*http.Request) bool
	redirectStatus int
	redirectTo     string
}

// seenRequest is what the fake saw of one request.
type seenRequest struct {
	method, path, spiffeID string
	peer                   spiffeid.ID
	authorization          []string
	body                   string
}

func newFakeTetherd(t *testing.T, ca *testpki.CA, serverID string) *fakeTetherd {
	t.Helper()
	f := &fakeTetherd{
		t:        t,
		ca:       ca,
		id:       spiffeid.RequireFromString(serverID),
		tokens:   map[string]string{},
		sessions: map[string]*api.Session{},
		ended:    map[string]bool{},
		hits:     map[string]int{},
	}
	serverSVID := ca.Issue(t, serverID)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{testpki.TLSCertificate(serverSVID)},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, 0, len(cs.PeerCertificates))
			for _, c := range cs.PeerCertificates {
				raw = append(raw, c.Raw)
			}
			_, _, err := x509svid.ParseAndVerify(raw, ca.Bundle())
			return err
		},
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTetherd) URL() string { return f.srv.URL }

func (f *fakeTetherd) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[key]
}

func (f *fakeTetherd) counts() (logins, rebinds int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.rebinds
}

// requests returns what the fake saw, in order.
func (f *fakeTetherd) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// redirectWhen makes the fake answer the requests that match with a
// redirect of status to location.
func (f *fakeTetherd) redirectWhen(match func(*http.Request) bool, status int, location string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.redirect, f.redirectStatus, f.redirectTo = match, status, location
}

func (f *fakeTetherd) lastPeerFP() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peerFPs[len(f.peerFPs)-1]
}

// endAll ends every session, as an idle timeout would.
func (f *fakeTetherd) endAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.sessions {
		f.ended[id] = true
	}
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code api.Code, msg string) {
	if code.Status() == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", api.WWWAuthenticate(code))
	}
	writeJSON(w, code.Status(), api.ErrorResponse{Error: &api.Error{Code: code, Message: msg}})
}

func (f *fakeTetherd) serve(w http.ResponseWriter, r *http.Request) {
	leaf := r.TLS.PeerCertificates[0]
	peerID, err := x509svid.IDFromCert(leaf)
	if err != nil {
		writeErr(w, api.CodeBadRequest, "no SPIFFE ID")
		return
	}
	fp := svid.Fingerprint(leaf)

	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))

	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[r.Method+" "+r.URL.Path]++
	f.peerFPs = append(f.peerFPs, fp)
	f.seen = append(f.seen, seenRequest{
		method: r.Method, path: r.URL.Path, spiffeID: r.URL.Query().Get(api.QuerySPIFFEID),
		peer: peerID, authorization: r.Header.Values("Authorization"), body: string(body),
	})
	if f.redirect != nil && f.redirect(r) {
		w.Header().Set("Location", f.redirectTo)
		w.WriteHeader(f.redirectStatus)
		return
	}

	if r.Method == http.MethodPost && r.URL.Path == api.PathSessions {
		if !strings.HasPrefix(peerID.Path(), "/admin/") {
			writeErr(w, api.CodeNotAdmin, peerID.String()+" matches no --admin pattern")
			return
		}
		f.logins++
		now := time.Now().UTC()
		s := &api.Session{
			SessionID: newToken(), SPIFFEID: peerID.String(), CNF: api.CNF{X5TS256: fp},
			CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(8 * time.Hour), IdleExpiresAt: now.Add(15 * time.Minute),
		}
		f.sessions[s.SessionID] = s
		f.order = append(f.order, s.SessionID)
		tok := newToken()
		f.tokens[tok] = s.SessionID
		writeJSON(w, http.StatusCreated, api.LoginResponse{Token: tok, Session: *s})
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == api.PathIntrospect {
		var in api.IntrospectRequest
		_ = json.NewDecoder(r.Body).Decode(&in)
		sid, ok := f.tokens[in.Token]
		if !ok || f.ended[sid] || f.sessions[sid].CNF.X5TS256 != in.CNF.X5TS256 {
			writeJSON(w, http.StatusOK, api.IntrospectResponse{})
			return
		}
		s := *f.sessions[sid]
		writeJSON(w, http.StatusOK, api.IntrospectResponse{Active: true, Session: &s})
		return
	}

	// Everything else needs a session, except a peer ending its own
	// sessions with its SVID alone.
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && !f.tokenToRevoke && r.Method == http.MethodDelete && r.URL.Path == api.PathSessions &&
		len(r.Header.Values("Authorization")) == 0 && r.URL.Query().Get(api.QuerySPIFFEID) == peerID.String() {
		writeJSON(w, http.StatusOK, api.RevokeResponse{Revoked: f.revokeLocked(peerID.String())})
		return
	}
	if !ok {
		writeErr(w, api.CodeMissingToken, "no bearer token")
		return
	}
	sid, known := f.tokens[token]
	if !known || f.sessions[sid].SPIFFEID != peerID.String() {
		writeErr(w, api.CodeInvalidToken, "invalid token")
		return
	}
	s := f.sessions[sid]
	if f.ended[sid] || f.alwaysEnded {
		writeErr(w, api.CodeSessionEnded, "the session has ended")
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == api.PathRebind {
		if s.CNF.X5TS256 == fp {
			writeErr(w, api.CodeBadRequest, "the session is already bound to this certificate")
			return
		}
		f.rebinds++
		delete(f.tokens, token)
		s.CNF.X5TS256 = fp
		tok := newToken()
		f.tokens[tok] = sid
		writeJSON(w, http.StatusOK, api.LoginResponse{Token: tok, Session: *s})
		return
	}
	if s.CNF.X5TS256 != fp {
		writeErr(w, api.CodeCertificateRotated, "the session is bound to another certificate: rebind")
		return
	}
	s.LastUsedAt = time.Now().UTC()

	switch {
	case r.Method == http.MethodGet && r.URL.Path == api.PathSessionsSelf:
		writeJSON(w, http.StatusOK, api.SessionResponse{Session: *s})
	case r.Method == http.MethodDelete && r.URL.Path == api.PathSessionsSelf:
		f.ended[sid] = true
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == api.PathSessions:
		filter := r.URL.Query().Get(api.QuerySPIFFEID)
		out := api.SessionsResponse{Sessions: []api.Session{}}
		for _, id := range f.order {
			if !f.ended[id] && (filter == "" || f.sessions[id].SPIFFEID == filter) {
				out.Sessions = append(out.Sessions, *f.sessions[id])
			}
		}
		writeJSON(w, http.StatusOK, out)
	case r.Method == http.MethodDelete && r.URL.Path == api.PathSessions:
		writeJSON(w, http.StatusOK, api.RevokeResponse{Revoked: f.revokeLocked(r.URL.Query().Get(api.QuerySPIFFEID))})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, api.PathSessions+"/"):
		id := strings.TrimPrefix(r.URL.Path, api.PathSessions+"/")
		if _, ok := f.sessions[id]; !ok || f.ended[id] {
			writeErr(w, api.CodeNotFound, "no such session")
			return
		}
		f.ended[id] = true
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/echo":
		w.Header().Set("X-Session", sid)
		_, _ = w.Write(body)
	default:
		writeErr(w, api.CodeNotFound, "no such path")
	}
}

// revokeLocked ends the live sessions of spiffeID and returns how many. The
// caller holds f.mu.
func (f *fakeTetherd) revokeLocked(spiffeID string) int {
	n := 0
	for id, s := range f.sessions {
		if !f.ended[id] && s.SPIFFEID == spiffeID {
			f.ended[id] = true
			n++
		}
	}
	return n
}
