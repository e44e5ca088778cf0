package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/pkg/api"
)

// TestHTTPMetricsAndDebugLog: every answer is counted by route, method and
// status and timed by route; at debug level each request is logged with its
// route, status and duration (a string, as people read it).
func TestHTTPMetricsAndDebugLog(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{registerer: reg})
	alice := e.ca.Issue(t, aliceID).Certificates[0]
	serve := func(method, path string) int {
		return e.serveHTTP(httptest.NewRequest(method, "https://tetherd"+path, nil), alice).Code
	}
	require.Equal(t, http.StatusCreated, serve(http.MethodPost, api.PathSessions))
	require.Equal(t, http.StatusUnauthorized, serve(http.MethodGet, api.PathSessionsSelf))
	require.Equal(t, http.StatusUnauthorized, serve(http.MethodGet, api.PathSessionsSelf)) // the kept child counts on
	require.Equal(t, http.StatusNotFound, serve(http.MethodGet, "/nope"))

	requests := func(route, method, status string) float64 {
		return counterValue(t, reg, "tether_http_requests_total", map[string]string{"route": route, "method": method, "status": status})
	}
	require.Equal(t, 1.0, requests(api.PathSessions, "POST", "201"))
	require.Equal(t, 2.0, requests(api.PathSessionsSelf, "GET", "401"))
	require.Equal(t, 1.0, requests("unmatched", "GET", "404"))

	// A method is the caller's to choose: one that is not standard is
	// counted as "other", so a caller cannot add series.
	require.Equal(t, http.StatusNotFound, serve("XA1", "/v1/zz"))
	require.Equal(t, http.StatusMethodNotAllowed, serve("BREW", api.PathSessionsSelf))
	require.Equal(t, 1.0, requests("unmatched", "other", "404"))
	require.Equal(t, 1.0, requests("unmatched", "other", "405"))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, []string{"XA1", "BREW"}, l.GetValue(), "a caller's method became a label value")
			}
		}
	}
	require.Contains(t, e.log.String(), `"msg":"http.request","route":"/v1/sessions","method":"POST","status":201,"duration":"`)
	require.False(t, strings.Contains(e.log.String(), `"duration":1`), "durations are strings")
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
	require.FailNowf(t, "no such counter", "%s%v", name, labels)
	return 0
}
