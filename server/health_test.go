package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
)

func TestHealth(t *testing.T) {
	notReady := errors.New("svid: SVID expired at 2026-11-25T00:00:00Z")
	var state error
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(server.Health(func() error { return state }, reg))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := get("/healthz")
	require.Equal(t, 200, code)
	code, _ = get("/readyz")
	require.Equal(t, 200, code)
	state = notReady
	code, body := get("/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "expired")
	code, _ = get("/healthz")
	require.Equal(t, 200, code, "alive even when not ready")
}

// TestMetrics: the counters and gauges follow what the manager does.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{session: session.Config{IdleTimeout: time.Minute, Registerer: reg, SweepInterval: time.Hour}})
	m, clk := e.mgr, e.clock
	ctx := context.Background()
	alice := session.Peer{ID: spiffeid.RequireFromString(aliceID), Fingerprint: "fp1"}
	tok, info, err := m.Login(ctx, alice)
	require.NoError(t, err)
	e.remember(tok)
	_, _, err = m.Login(ctx, alice)
	require.NoError(t, err)
	_, err = m.Validate(ctx, tok, session.Peer{ID: alice.ID, Fingerprint: "fp2"})
	require.Error(t, err)
	_, err = m.Validate(ctx, "x.y.z", alice)
	require.Error(t, err)
	require.NoError(t, m.Revoke(ctx, info.ID))

	srv := httptest.NewServer(server.Health(func() error { return nil }, reg))
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	out := scrape()
	for _, want := range []string{
		"tether_sessions_created_total 2",
		"tether_sessions_live 1",
		`tether_sessions_ended_total{cause="revoked"} 1`,
		`tether_session_rejections_total{reason="unknown_session"} 1`,
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, `reason="fingerprint_mismatch"`, "a rotated certificate is routine: not counted as a rejection")
	require.Regexp(t, `tether_session_store_bytes [1-9]`, out)

	clk.Add(2 * time.Minute)
	require.Equal(t, 1, m.Sweep(ctx))
	out = scrape()
	require.Contains(t, out, `tether_sessions_ended_total{cause="idle"} 1`)
	require.Contains(t, out, "tether_sessions_live 0")
	require.True(t, strings.Contains(out, "tether_session_store_bytes 0"))
}

// TestHealthServerServes: the health handler behind NewHealthServer and
// LimitListener, wired as tetherd wires them, answers probes.
func TestHealthServerServes(t *testing.T) {
	srv := server.NewHealthServer(server.Health(func() error { return nil }, prometheus.NewRegistry()), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var shed atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(server.LimitListener(ln, server.HealthMaxConnections, func() { shed.Add(1) }))
	}()
	defer func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	}()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := hc.Get("http://" + ln.Addr().String() + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Equal(t, 1, resp.ProtoMajor, "HTTP/1.1 only")
	}
	require.Zero(t, shed.Load())
}
