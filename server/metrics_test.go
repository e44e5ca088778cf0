package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testpki"
	logbuf "github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
)

// TestHTTPMetricsAndDebugLog: every answer is counted by route, method and
// status and timed by route; at debug level each request is logged with its
// route, status and duration (a string, as people read it).
func TestHTTPMetricsAndDebugLog(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	alice := ca.Issue(t, "spiffe://example.org/admin/alice")
	mgr, err := session.NewManager(session.Config{Issuer: spiffeid.RequireFromString("spiffe://example.org/tetherd"), LoginRate: rate.Inf})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mgr.Close() })
	admins, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	logs := &logbuf.Buffer{}
	h := server.NewHandler(server.Config{
		Sessions: mgr, Admins: admins, Registerer: reg,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	serve := func(method, path string) int {
		req := httptest.NewRequest(method, "https://tetherd"+path, nil)
		req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: alice.Certificates, VerifiedChains: [][]*x509.Certificate{alice.Certificates}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	require.Equal(t, http.StatusCreated, serve(http.MethodPost, api.PathSessions))
	require.Equal(t, http.StatusUnauthorized, serve(http.MethodGet, api.PathSessionsSelf))
	require.Equal(t, http.StatusNotFound, serve(http.MethodGet, "/nope"))

	requests := func(route, method, status string) float64 {
		return counterValue(t, reg, "tether_http_requests_total", map[string]string{"route": route, "method": method, "status": status})
	}
	require.Equal(t, 1.0, requests(api.PathSessions, "POST", "201"))
	require.Equal(t, 1.0, requests(api.PathSessionsSelf, "GET", "401"))
	require.Equal(t, 1.0, requests("unmatched", "GET", "404"))
	require.Contains(t, logs.String(), `"msg":"http.request","route":"/v1/sessions","method":"POST","status":201,"duration":"`)
	require.False(t, strings.Contains(logs.String(), `"duration":1`), "durations are strings")
}

// counterValue is the value of the counter of family name with the labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}
