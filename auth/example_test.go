package auth_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/devpki"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// Example_embedding hosts SPIFFE-bound admin sessions inside a service's own
// http.Server, the way a secrets manager (SPIKE Nexus, say) would: the
// session manager, the mTLS config and the middleware (given the trust
// bundles, so open connections are re-verified when they change) are all it
// needs. In
// production the SVID and bundles come from a workloadapi.X509Source; here a
// throwaway CA stands in for SPIRE.
func Example_embedding() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca, _ := devpki.NewCA(td, time.Hour)
	serviceSVID, _ := ca.Issue(spiffeid.RequireFromString("spiffe://example.org/nexus"), time.Hour)
	source := &svid.StaticSource{SVID: serviceSVID, Bundles: x509bundle.NewSet(ca.Bundle())}

	// 1. The session manager: in memory, signing key made here, never written.
	sessions, _ := session.NewManager(session.Config{Issuer: serviceSVID.ID, TTL: time.Hour, IdleTimeout: 15 * time.Minute})
	defer sessions.Close()
	admins, _ := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})

	// 2. The service's routes: tether's login/logout/rebind API mounted as is,
	// and the service's own handler behind RequireSession.
	mw := &auth.Middleware{Sessions: sessions, Bundles: source}
	mux := http.NewServeMux()
	api := server.NewHandler(server.Config{Sessions: sessions, Bundles: source, Admins: admins})
	mux.Handle("/v1/sessions", api)
	mux.Handle("/v1/sessions/", api)
	mux.Handle("/v1/secrets", mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := auth.CallerFrom(r.Context())
		fmt.Fprintf(w, "hello %s, session bound to your certificate", caller.Peer.ID)
	})))

	// 3. The service's own server, with tether's TLS 1.3 mTLS config.
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = auth.ServerTLSConfig(source, source)
	srv.Config.ConnContext = auth.ConnContext
	srv.StartTLS()
	defer srv.Close()

	// An admin logs in with its SVID and uses the token.
	alice, _ := ca.Issue(spiffeid.RequireFromString("spiffe://example.org/admin/alice"), time.Hour)
	client := mtlsClient(alice)
	resp, err := client.Post(srv.URL+"/v1/sessions", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	var login struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/secrets", nil)
	req.Header.Set("Authorization", "Bearer "+login.Token)
	resp, err = client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	// The same token from another admin's certificate is worthless.
	bob, _ := ca.Issue(spiffeid.RequireFromString("spiffe://example.org/admin/bob"), time.Hour)
	resp, err = mtlsClient(bob).Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// 200 hello spiffe://example.org/admin/alice, session bound to your certificate
	// 401
}

func mtlsClient(s *x509svid.SVID) *http.Client {
	cert := tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	for _, c := range s.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		// A real client authorizes the server's SPIFFE ID (pkg/client does).
		InsecureSkipVerify: true, //nolint:gosec // example brevity; see pkg/client
	}}}
}
