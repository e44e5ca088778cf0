package server_test

// Tests of the API's connection limits (server.Listener) and of the bounds
// every request meets (headers, bodies, connection age), through real TLS on
// a loopback port.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/svid"
)

// roundTrip writes a raw request on c and reads one answer.
func roundTrip(t *testing.T, c net.Conn, raw string) (*http.Response, []byte, error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// closedByServer reports whether the server closed c (a read gets EOF or a
// reset before the deadline).
func closedByServer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	return err != nil && !timedOut
}

const selfRequest = "GET /v1/sessions/self HTTP/1.1\r\nHost: tetherd\r\n\r\n"

// servedConn opens a connection as s and fails unless the API serves it: a
// request without a token on it is answered 401.
func servedConn(t *testing.T, e *env, s *x509svid.SVID) *tls.Conn {
	t.Helper()
	c, err := e.dialAPI(t, s)
	require.NoError(t, err)
	resp, _, err := roundTrip(t, c, selfRequest)
	require.NoError(t, err, "a connection within the cap")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a connection within the cap")
	return c
}

// TestConnectionCapPerIdentity: one SPIFFE ID holds at most MaxPerIdentity
// connections; the next one is closed right after its handshake; another
// identity is not affected, and a freed slot is usable again.
func TestConnectionCapPerIdentity(t *testing.T) {
	e := newEnv(t, envOpts{conns: server.ConnLimits{MaxPerIdentity: 3}})
	gw := e.ca.Issue(t, introID)
	var held []*tls.Conn
	for range 3 {
		held = append(held, servedConn(t, e, gw))
	}
	c, err := e.dialAPI(t, gw)
	if err == nil {
		_, _, err := roundTrip(t, c, selfRequest)
		require.Error(t, err, "a 4th connection of the same identity was served")
	}
	testutil.WaitFor(t, 5*time.Second, "the refusal logged", func() bool {
		return strings.Contains(e.log.String(), `"reason":"max_connections_per_identity"`)
	})
	// alice is another identity: she logs in.
	alice := e.client(e.ca.Issue(t, aliceID), 0)
	e.login(alice)
	// A freed slot serves again.
	_ = held[0].Close()
	testutil.WaitFor(t, 5*time.Second, "a slot freed", func() bool {
		c, err := e.dialAPI(t, gw)
		if err != nil {
			return false
		}
		resp, _, err := roundTrip(t, c, selfRequest)
		return err == nil && resp.StatusCode == http.StatusUnauthorized
	})
}

// TestConnectionCapTotal: beyond MaxConnections a new connection is closed as
// soon as it is accepted.
func TestConnectionCapTotal(t *testing.T) {
	e := newEnv(t, envOpts{conns: server.ConnLimits{MaxConnections: 4}})
	alice := e.ca.Issue(t, aliceID)
	for range 4 {
		servedConn(t, e, alice)
	}
	if c, err := e.dialAPI(t, alice); err == nil {
		_, _, err := roundTrip(t, c, selfRequest)
		require.Error(t, err, "a 5th connection was served over a cap of 4")
	}
	// The refused client may see its connection closed before the line is
	// written.
	testutil.WaitFor(t, 5*time.Second, "the refusal logged", func() bool {
		return strings.Contains(e.log.String(), `"reason":"max_connections"`)
	})
}

// TestStalledHandshakesPushedOut: connections that never finish their
// handshake fill MaxHandshakes; a new connection pushes out the oldest, so a
// real client still gets in at once, long before the handshake timeout.
func TestStalledHandshakesPushedOut(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{conns: server.ConnLimits{MaxHandshakes: 4, HandshakeTimeout: time.Minute}, registerer: reg})
	var stalled []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		stalled = append(stalled, c)
	}
	// The first four were pushed out by the next four.
	for i, c := range stalled[:4] {
		require.True(t, closedByServer(c, 5*time.Second), "stalled connection %d is still open", i)
	}
	alice := e.client(e.ca.Issue(t, aliceID), 0)
	start := time.Now()
	e.login(alice)
	require.Less(t, time.Since(start), 30*time.Second, "the login waited")
	// Each pushed-out connection is counted once, as evicted, not also as a
	// failed handshake (its handshake fails on the closed socket).
	refused := func(reason string) float64 {
		return counterValue(t, reg, "tether_api_connections_refused_total", map[string]string{"reason": reason})
	}
	require.GreaterOrEqual(t, refused(server.RefusedEvicted), 4.0, "the first four, and the fifth when alice's handshake came")
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.False(t, l.GetValue() == server.RefusedHandshake && m.GetCounter().GetValue() > 0,
					"evicted connections counted again as failed handshakes: %v", m.GetCounter().GetValue())
			}
		}
	}
}

// TestMaxConnectionAge: a request on a connection older than MaxAge is
// answered with Connection: close.
func TestMaxConnectionAge(t *testing.T) {
	e := newEnv(t, envOpts{conns: server.ConnLimits{MaxAge: time.Nanosecond}})
	c, err := e.dialAPI(t, e.ca.Issue(t, aliceID))
	require.NoError(t, err)
	resp, _, err := roundTrip(t, c, selfRequest)
	require.NoError(t, err)
	require.True(t, resp.Close, "an old connection was kept open")
	require.True(t, closedByServer(c, 5*time.Second), "the server did not close the old connection")
}

// TestNetHTTPAnswersInJSON: what net/http answers by itself (headers over the
// bound, a malformed request, plain HTTP on the TLS port) comes in the API's
// JSON error format.
func TestNetHTTPAnswersInJSON(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.ca.Issue(t, aliceID)
	check := func(t *testing.T, resp *http.Response, body []byte, status int, code api.Code) {
		t.Helper()
		var er api.ErrorResponse
		require.False(t, resp.StatusCode != status || json.Unmarshal(body, &er) != nil || er.Error == nil || er.Error.Code != code, "got %d %q, want %d %s", resp.StatusCode, body, status, code)
		require.False(t, resp.Header.Get("Content-Type") != "application/json" || !resp.Close, "headers %v", resp.Header)
	}
	t.Run("headers-too-large", func(t *testing.T) {
		c, err := e.dialAPI(t, alice)
		require.NoError(t, err)
		resp, body, err := roundTrip(t, c, "GET /v1/sessions/self HTTP/1.1\r\nHost: tetherd\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
		require.NoError(t, err)
		check(t, resp, body, http.StatusRequestHeaderFieldsTooLarge, api.CodeHeadersTooLarge)
	})
	t.Run("malformed-request-line", func(t *testing.T) {
		c, err := e.dialAPI(t, alice)
		require.NoError(t, err)
		resp, body, err := roundTrip(t, c, "GET\r\n\r\n")
		require.NoError(t, err)
		check(t, resp, body, http.StatusBadRequest, api.CodeBadRequest)
	})
	t.Run("plain-http-on-tls-port", func(t *testing.T) {
		c, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		defer c.Close()
		resp, body, err := roundTrip(t, c, selfRequest)
		require.NoError(t, err)
		check(t, resp, body, http.StatusBadRequest, api.CodeBadRequest)
	})
}

// TestBodyBoundEveryEndpoint: a body over 64 KiB is 413 payload_too_large on
// every call, once the caller is authorized (login included, whose body is
// otherwise ignored), whether its length is declared or chunked; nothing
// happens (no session is created).
func TestBodyBoundEveryEndpoint(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := e.client(e.ca.Issue(t, aliceID), 0)
	tok, s := e.login(alice)
	big := bytes.Repeat([]byte("x"), 70<<10)
	auth := []string{"Authorization", "Bearer " + tok}
	// A rebind is authorized by its token from a newer leaf of the same ID
	// (the body is looked at only after that).
	rotated := e.client(e.ca.Issue(t, aliceID), 0)
	calls := []struct {
		method, path string
		headers      []string
		as           *http.Client
	}{
		{http.MethodPost, api.PathSessions, nil, alice},
		{http.MethodGet, api.PathSessionsSelf, auth, alice},
		{http.MethodGet, api.PathSessions, auth, alice},
		{http.MethodDelete, api.PathSessions + "/" + s.SessionID, auth, alice},
		{http.MethodDelete, api.PathSessions + "?spiffe_id=" + aliceID, auth, alice},
		{http.MethodDelete, api.PathSessionsSelf, auth, alice},
		{http.MethodPost, api.PathRebind, auth, rotated},
	}
	for _, c := range calls {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(big)
			if chunked {
				body = io.MultiReader(bytes.NewReader(big)) // no length: sent chunked
			}
			r, err := e.do(c.as, c.method, c.path, body, c.headers...)
			require.NoError(t, err)
			require.False(t, r.status != http.StatusRequestEntityTooLarge || r.code() != api.CodePayloadTooLarge, "%s %s (chunked %v): %d %s", c.method, c.path, chunked, r.status, r.body)
		}
	}
	require.Equal(t, 1, e.mgr.Len(), "sessions: want alice's one; a refused call changed state")
	_, ok := e.mgr.Get(s.SessionID)
	require.True(t, ok, "a refused call ended the session")
}

// TestClientHangUpCancelsRequest: a client that hangs up while its request is
// served, or even before its handler starts, has that request's context
// cancelled (net/http's one-byte watcher read, which server.Conn serves by
// waiting on the socket first), and requests sent back to back on one
// connection are all answered, in order.
func TestClientHangUpCancelsRequest(t *testing.T) {
	started, cancelled := make(chan string, 4), make(chan string, 4)
	e := newEnv(t, envOpts{serve: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/hang") {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, r.URL.Path) //nolint:gosec // G705: a test handler echoing its own fixed paths as text/plain
			return
		}
		started <- r.URL.Path
		select {
		case <-r.Context().Done():
			cancelled <- r.URL.Path
		case <-time.After(20 * time.Second): // the test fails first
		}
	})})
	alice := e.ca.Issue(t, aliceID)
	within := func(t *testing.T, ch <-chan string, want, what string) {
		t.Helper()
		select {
		case got := <-ch:
			require.Equal(t, want, got, what)
		case <-time.After(10 * time.Second):
			require.FailNow(t, what+": not within 10s")
		}
	}

	t.Run("while-served", func(t *testing.T) {
		c, err := e.dialAPI(t, alice)
		require.NoError(t, err)
		_, err = io.WriteString(c, "GET /hang1 HTTP/1.1\r\nHost: tetherd\r\n\r\n")
		require.NoError(t, err)
		within(t, started, "/hang1", "the handler started")
		require.NoError(t, c.Close())
		within(t, cancelled, "/hang1", "the request's context was cancelled after the client hung up")
	})
	t.Run("before-served", func(t *testing.T) {
		c, err := e.dialAPI(t, alice)
		require.NoError(t, err)
		_, err = io.WriteString(c, "GET /hang2 HTTP/1.1\r\nHost: tetherd\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, c.Close())
		within(t, started, "/hang2", "the handler started")
		within(t, cancelled, "/hang2", "the request's context was cancelled: its client had hung up")
	})
	t.Run("pipelined", func(t *testing.T) {
		c, err := e.dialAPI(t, alice)
		require.NoError(t, err)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.WriteString(c, "GET /a HTTP/1.1\r\nHost: tetherd\r\n\r\nGET /b HTTP/1.1\r\nHost: tetherd\r\n\r\nGET /c HTTP/1.1\r\nHost: tetherd\r\n\r\n")
		require.NoError(t, err)
		br := bufio.NewReader(c)
		for _, want := range []string{"/a", "/b", "/c"} {
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err, want)
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.NoError(t, err, want)
			require.Equal(t, want, string(body))
		}
	})
}

// TestOneByteReadFindsLaterRecords: two records that reach the server at
// once, the first read whole: a one-byte Read then gets the second at once,
// although nothing more comes on the socket (TLS must not have taken it off
// the socket where the wait for the socket cannot see it).
func TestOneByteReadFindsLaterRecords(t *testing.T) {
	e := newEnv(t, envOpts{})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := server.NewListener(tcp, auth.ServerTLSConfig(e.src, e.src), server.ConnLimits{}, nil, nil)
	t.Cleanup(func() { _ = ln.Close() })

	wrote := make(chan error, 1)
	go func() {
		src := &svid.StaticSource{SVID: e.ca.Issue(t, aliceID), Bundles: e.bundles}
		cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
		c, err := tls.Dial("tcp", tcp.Addr().String(), cfg)
		if err != nil {
			wrote <- err
			return
		}
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Write([]byte("first")) // one record
		if err == nil {
			_, err = c.Write([]byte("second")) // another
		}
		wrote <- err
	}()
	sc, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Close() })
	conn, ok := sc.(*server.Conn)
	require.True(t, ok)
	require.NotEmpty(t, conn.ConnectionState().PeerCertificates, "the handshake")
	select {
	case err := <-wrote:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the client did not write within 10s")
	}
	require.NoError(t, sc.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 64)
	n, err := sc.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "first", string(buf[:n]))
	n, err = sc.Read(buf[:1])
	require.NoError(t, err, "the second record, already here, was not read")
	require.Equal(t, "s", string(buf[:n]))
}
