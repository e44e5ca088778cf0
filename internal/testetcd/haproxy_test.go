package testetcd_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testetcd"
	"github.com/tetherproject/tether/internal/testpki"
)

// seen is what a backend answers: its name and the client certificate it
// saw.
type seen struct {
	Backend  string `json:"backend"`
	ClientID string `json:"client_id"`
	ClientFP string `json:"client_fp"`
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// TestHAProxyPassesTLSThrough: HAProxy in TCP mode in front of two mTLS
// servers relays each connection to one of them, bytes untouched: the
// client sees that backend's own certificate (HAProxy has none), the
// backend sees the client's, and connections alternate between backends; a
// client without a certificate is refused by the backend itself; a backend
// that is gone is skipped.
func TestHAProxyPassesTLSThrough(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	leaves := map[string][]byte{} // backend name → its leaf certificate
	var backends []*httptest.Server
	var addrs []string
	for _, name := range []string{"b0", "b1"} {
		svid := ca.Issue(t, "spiffe://example.org/backend/"+name, testpki.WithIPs(net.IPv4(127, 0, 0, 1)))
		leaves[name] = svid.Certificates[0].Raw
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			leaf := r.TLS.PeerCertificates[0]
			_ = json.NewEncoder(w).Encode(seen{Backend: name, ClientID: leaf.URIs[0].String(), ClientFP: fingerprint(leaf.Raw)})
		}))
		srv.TLS = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{testpki.TLSCertificate(svid)},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    roots,
		}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
		srv.StartTLS()
		t.Cleanup(srv.Close)
		backends = append(backends, srv)
		addrs = append(addrs, srv.Listener.Addr().String())
	}
	h := testetcd.StartHAProxy(t, addrs...)

	client := ca.Issue(t, "spiffe://example.org/admin/alice")
	get := func(cert *tls.Certificate) (seen, []byte, error) {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		// A new connection each time: HAProxy balances connections.
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
		resp, err := hc.Get("https://" + h.Addr() + "/")
		if err != nil {
			return seen{}, nil, err
		}
		defer resp.Body.Close()
		var s seen
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			return seen{}, nil, fmt.Errorf("%d: %w", resp.StatusCode, err)
		}
		return s, resp.TLS.PeerCertificates[0].Raw, nil
	}

	cert := testpki.TLSCertificate(client)
	hits := map[string]int{}
	for range 4 {
		s, serverLeaf, err := get(&cert)
		require.NoError(t, err)
		require.Equal(t, leaves[s.Backend], serverLeaf, "the client sees the certificate of the backend that answered")
		require.Equal(t, "spiffe://example.org/admin/alice", s.ClientID)
		require.Equal(t, fingerprint(client.Certificates[0].Raw), s.ClientFP, "the backend sees the client's own leaf")
		hits[s.Backend]++
	}
	require.Equal(t, map[string]int{"b0": 2, "b1": 2}, hits, "round robin over connections")

	_, _, err := get(nil)
	require.ErrorContains(t, err, "certificate required", "the backend, not HAProxy, refuses a client without a certificate")

	backends[0].Close()
	for range 4 {
		s, _, err := get(&cert)
		require.NoError(t, err, "a backend that is gone is skipped")
		require.Equal(t, "b1", s.Backend)
	}
}
