package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
)

// TestDrainKeepsFailures: only the drain bound reached is no failure
// (TestFaultSIGTERMDrains); a server that stopped serving by itself still
// ends tetherd with exit 1 and its reason, and no drain warning.
func TestDrainKeepsFailures(t *testing.T) {
	mgr, err := session.NewManager(session.Config{Issuer: spiffeid.RequireFromString(ftServerID)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mgr.Close() }()
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &servers{
		api: &http.Server{ReadHeaderTimeout: time.Second}, health: &http.Server{ReadHeaderTimeout: time.Second},
		apiConns: server.NewListener(apiLn, &tls.Config{MinVersion: tls.VersionTLS13}, server.ConnLimits{}, nil, nil),
		stopped:  make(chan error, 2),
	}
	go func() { srv.stopped <- srv.api.Serve(srv.apiConns) }()
	go func() { srv.stopped <- srv.health.Serve(healthLn) }()

	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	runErr := errors.New("serving stopped: boom")
	err = drain(log, time.Second, srv, mgr, false, runErr)
	if !errors.Is(err, runErr) || cli.ExitCode(err) != cli.ExitFailure {
		t.Fatalf("drain: %v (exit %d), want the serving failure, exit 1", err, cli.ExitCode(err))
	}
	for range 2 {
		if err := <-srv.stopped; !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("a server stopped with %v", err)
		}
	}
	if strings.Contains(buf.String(), "tetherd.drain_timeout") {
		t.Fatalf("a drain with nothing in flight warns of a cut: %s", buf.String())
	}
}
