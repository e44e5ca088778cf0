package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
)

// Example_embedding hosts SPIFFE-bound admin sessions inside a service's own
// http.Server, the way a secrets manager (SPIKE Nexus, say) would: the
// session manager, the mTLS config and the middleware (given the trust
// bundles, so open connections are re-verified when they change) are all it
// needs. Package server is mounted too, for tether's own login, logout and
// rebind routes; a service may write its own with RequirePeer and
// session.Manager.Login instead. In production the SVID and bundles come from
// a workloadapi.X509Source; here a throwaway CA (below) stands in for SPIRE.
func Example_embedding() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := newThrowawayCA(td)
	serviceSVID := ca.issue(spiffeid.RequireFromString("spiffe://example.org/nexus"))
	bundles := x509bundle.NewSet(x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.cert}))

	// 1. The session manager: in memory, signing key made here, never written.
	sessions, _ := session.NewManager(session.Config{Issuer: serviceSVID.ID, TTL: time.Hour, IdleTimeout: 15 * time.Minute})
	defer sessions.Close()
	admins, _ := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})

	// 2. The service's routes: tether's login/logout/rebind API mounted as is,
	// and the service's own handler behind RequireSession.
	mw := &auth.Middleware{Sessions: sessions, Bundles: bundles}
	mux := http.NewServeMux()
	api := server.NewHandler(server.Config{Sessions: sessions, Bundles: bundles, Admins: admins})
	mux.Handle("/v1/sessions", api)
	mux.Handle("/v1/sessions/", api)
	mux.Handle("/v1/secrets", mw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := auth.CallerFrom(r.Context())
		fmt.Fprintf(w, "hello %s, session bound to your certificate", caller.Peer.ID)
	})))

	// 3. The service's own server, with tether's TLS 1.3 mTLS config.
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = auth.ServerTLSConfig(serviceSVID, bundles)
	srv.Config.ConnContext = auth.ConnContext
	srv.StartTLS()
	defer srv.Close()

	// An admin logs in with its SVID and uses the token.
	alice := ca.issue(spiffeid.RequireFromString("spiffe://example.org/admin/alice"))
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
	bob := ca.issue(spiffeid.RequireFromString("spiffe://example.org/admin/bob"))
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

// throwawayCA stands in for SPIRE: a CA of one trust domain that issues
// X.509-SVIDs for an hour.
type throwawayCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newThrowawayCA(td spiffeid.TrustDomain) *throwawayCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), URIs: []*url.URL{td.ID().URL()},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	return &throwawayCA{cert: cert, key: key}
}

// issue makes an X.509-SVID for id: a leaf with id as its URI SAN, for TLS
// clients and servers.
func (ca *throwawayCA) issue(id spiffeid.ID) *x509svid.SVID {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	tmpl := &x509.Certificate{
		SerialNumber: serial, URIs: []*url.URL{id.URL()},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	cert, _ := x509.ParseCertificate(der)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}
