package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/svid"
)

// roleServe runs this binary as one of the comparison's servers:
//
//	e2e serve -kind baseline|jwtpeer -cert F -key F -bundle F [-jwks F]
//
// It prints "listening ADDR" once it serves, and serves until killed.
const roleServe = "serve"

// The kinds of server this binary can be.
const (
	kindBaseline = "baseline"
	kindJWTPeer  = "jwtpeer"
)

func serveMain(args []string) error {
	fs := flag.NewFlagSet("e2e serve", flag.ContinueOnError)
	kind := fs.String("kind", "", "baseline or jwtpeer")
	cert := fs.String("cert", "", "SVID certificate (PEM)")
	key := fs.String("key", "", "SVID key (PEM)")
	bundle := fs.String("bundle", "", "X.509 bundle (PEM)")
	jwks := fs.String("jwks", "", "JWT bundle (JWKS), for jwtpeer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := x509svid.Load(*cert, *key)
	if err != nil {
		return err
	}
	b, err := x509bundle.Load(s.ID.TrustDomain(), *bundle)
	if err != nil {
		return err
	}
	var h http.Handler
	switch *kind {
	case kindBaseline:
		h = baselineHandler()
	case kindJWTPeer:
		jb, err := jwtbundle.Load(s.ID.TrustDomain(), *jwks)
		if err != nil {
			return err
		}
		h = jwtPeerHandler(jb, s.ID.String())
	default:
		return fmt.Errorf("-kind %q: baseline or jwtpeer", *kind)
	}
	src := &svid.StaticSource{SVID: s, Bundles: x509bundle.NewSet(b)}
	srv := plainServer(h)
	srv.TLSConfig = auth.ServerTLSConfig(src, src)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	_ = os.Stdout.Close()
	return srv.ServeTLS(ln, "", "")
}

// plainServer is net/http's server with tetherd's limits and HTTP/1.1 only,
// as server.NewHTTPServer makes tetherd's, without anything of tether's
// request path.
func plainServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Server{
		ErrorLog:          log.New(io.Discard, "", 0), // handshakes cut at the end of a slice
		Protocols:         &protocols,
		Handler:           h,
		MaxHeaderBytes:    server.MaxHeaderBytes,
		ReadHeaderTimeout: server.ReadHeaderTimeout,
		ReadTimeout:       server.ReadTimeout,
		WriteTimeout:      server.WriteTimeout,
		IdleTimeout:       server.IdleTimeout,
	}
}

// cannedSession and cannedLogin are answers the size of tetherd's (its
// session object, and a login's token and session), made once.
var (
	cannedSession = mustJSON(api.SessionResponse{Session: cannedSessionObject()})
	cannedLogin   = mustJSON(api.LoginResponse{Token: strings.Repeat("t", 520), Session: cannedSessionObject()})
)

func cannedSessionObject() api.Session {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	return api.Session{
		SessionID: "dyo3ql73cyrlb6vmvtpeexty3q", SPIFFEID: adminID.String(),
		CNF:       api.CNF{X5TS256: "aUfhS1eptcdumpXPZjdfdbjY3gKmPDbECSonnqyfxOE"},
		CreatedAt: at, LastUsedAt: at, ExpiresAt: at.Add(8 * time.Hour), IdleExpiresAt: at.Add(15 * time.Minute),
		Roles: []string{}, State: api.StateActive, Approvals: []api.Approval{}, AuthenticatedAt: at,
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// answer writes a canned JSON answer with the headers tetherd's have.
func answer(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// baselineHandler checks nothing: GET answers a session-sized JSON, POST a
// login-sized one with 201.
func baselineHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			answer(w, http.StatusCreated, cannedLogin)
			return
		}
		answer(w, http.StatusOK, cannedSession)
	})
}

// jwtPeerHandler validates the request's JWT-SVID (signature, expiry,
// audience: jwtsvid.ParseAndValidate) against bundle at every request, and
// answers a session-sized JSON; 401 without a valid one.
func jwtPeerHandler(bundle *jwtbundle.Bundle, audience string) http.Handler {
	aud := []string{audience}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		if _, err := jwtsvid.ParseAndValidate(token, bundle, aud); err != nil {
			http.Error(w, "invalid JWT-SVID", http.StatusUnauthorized)
			return
		}
		answer(w, http.StatusOK, cannedSession)
	})
}
