package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/stretchr/testify/require"
)

func TestStatTicks(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 56.
	line := "4242 (tetherd (x) y) S 1 4242 4242 0 -1 4194560 700 0 0 0 1234 56 0 0 20 0 9 0 100 0 0\n"
	n, err := statTicks([]byte(line))
	require.NoError(t, err)
	require.Equal(t, int64(1290), n)
	_, err = statTicks([]byte("4242 (short) S 1"))
	require.Error(t, err)
	require.Positive(t, int64(procCPU(1, 100)+1), "pid 1's CPU is readable") // +1: it may be 0
}

func TestReadHead(t *testing.T) {
	for _, tc := range []struct {
		name, head   string
		status, size int
		closed, bad  bool
	}{
		{name: "ok", head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n", status: 200, size: 12},
		{name: "close", head: "HTTP/1.1 201 Created\r\ncontent-length: 0\r\nConnection: close\r\n\r\n", status: 201, closed: true},
		{name: "fail/no-length", head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", bad: true},
		{name: "fail/http-1.0", head: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", bad: true},
		{name: "fail/bad-length", head: "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, size, closed, err := readHead(bufio.NewReader(strings.NewReader(tc.head)))
			if tc.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, []any{tc.status, tc.size, tc.closed}, []any{status, size, closed})
		})
	}
}

func TestRequest(t *testing.T) {
	require.Equal(t, "GET /v1/sessions/self HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer x\r\n\r\n",
		string(request("GET", "/v1/sessions/self", "h:1", "Authorization: Bearer x")))
	require.Equal(t, "POST /v1/sessions HTTP/1.1\r\nHost: h:1\r\nContent-Length: 0\r\n\r\n", string(request("POST", "/v1/sessions", "h:1")))
}

// TestServers: the baseline answers the canned JSONs; the JWT-SVID peer
// answers only a valid JWT-SVID for its audience.
func TestServers(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)
	jb, err := jwtbundle.Load(trustDomain, p.jwks)
	require.NoError(t, err)
	tok, err := p.jwtSVID()
	require.NoError(t, err)

	serve := func(h http.Handler, method, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/v1/sessions/self", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	base := baselineHandler()
	require.Equal(t, string(cannedSession), serve(base, http.MethodGet, "").Body.String())
	w := serve(base, http.MethodPost, "")
	require.Equal(t, http.StatusCreated, w.Code)
	require.Equal(t, string(cannedLogin), w.Body.String())

	peer := jwtPeerHandler(jb, jwtPeerID.String())
	require.Equal(t, string(cannedSession), serve(peer, http.MethodGet, "Bearer "+tok).Body.String())
	require.Equal(t, http.StatusUnauthorized, serve(peer, http.MethodGet, "").Code)
	require.Equal(t, http.StatusUnauthorized, serve(peer, http.MethodGet, "Bearer "+tok[:len(tok)-2]+"AA").Code)
	other := jwtPeerHandler(jb, baselineID.String())
	require.Equal(t, http.StatusUnauthorized, serve(other, http.MethodGet, "Bearer "+tok).Code, "another audience")
}

func TestFlags(t *testing.T) {
	var sink strings.Builder
	_, err := parseFlags([]string{}, &sink)
	require.ErrorContains(t, err, "-tetherd is required")
	_, err = parseFlags([]string{"-tetherd", "x", "-rounds", "1000"}, &sink)
	require.ErrorContains(t, err, "-rounds")
	_, err = parseFlags([]string{"-tetherd", "x", "-slice", "1m"}, &sink)
	require.ErrorContains(t, err, "-slice")
	c, err := parseFlags([]string{"-tetherd", "x"}, &sink)
	require.NoError(t, err)
	require.Equal(t, 15, c.rounds)
}
