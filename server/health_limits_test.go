package server

// Issue 9, finding 2: the health listener must bound its connections in
// time, header size and number. Tests (a) to (d) fail against the former
// wiring, a plain http.Server{ReadHeaderTimeout: 5 * time.Second} on a bare
// listener: idle and trickling connections outlive healthWait, 8 KiB of
// headers get 200, and a ninth connection is served.

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testutil"
)

// healthWait bounds every wait for something the server does. It is shorter
// than the former 5s header timeout, so a test cannot pass on that alone.
const healthWait = 3 * time.Second

// untested is a limit a test does not exercise: it never fires during one.
const untested = time.Minute

// healthConnStats counts the connections the http.Server sees, by its ConnState
// hook: those open now, and the most ever open at once.
type healthConnStats struct {
	mu         sync.Mutex
	open, most int
}

func (s *healthConnStats) hook(_ net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.open++
		s.most = max(s.most, s.open)
	case http.StateClosed, http.StateHijacked:
		s.open--
	}
}

func (s *healthConnStats) get() (open, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.most
}

type healthEnv struct {
	addr  string
	ln    *limitListener // nil without a cap
	stats *healthConnStats
	shed  atomic.Int64
}

// startHealth serves Health (always ready, empty registry) with the given
// time limits on 127.0.0.1:0, behind LimitListener when maxConns > 0; the
// server is closed when the test ends.
func startHealth(t *testing.T, lim healthLimits, maxConns int) *healthEnv {
	t.Helper()
	env := &healthEnv{stats: &healthConnStats{}}
	srv := newHealthServer(Health(func() error { return nil }, prometheus.NewRegistry()), nil, lim)
	srv.ConnState = env.stats.hook
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	env.addr = ln.Addr().String()
	if maxConns > 0 {
		limited, ok := LimitListener(ln, maxConns, func() { env.shed.Add(1) }).(*limitListener)
		require.True(t, ok)
		env.ln = limited
		ln = limited
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	return env
}

// healthConn is one raw connection to the health server.
type healthConn struct {
	net.Conn
	br *bufio.Reader
}

func (e *healthEnv) dial(t *testing.T) *healthConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, healthWait)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &healthConn{Conn: c, br: bufio.NewReader(c)}
}

// do writes raw (a whole request) and reads the answer, body included.
func (c *healthConn) do(t *testing.T, raw string) *http.Response {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(healthWait)))
	_, err := io.WriteString(c, raw)
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp
}

// kubeletProbe is a kubelet's readiness probe, keeping the connection open.
const kubeletProbe = "GET /readyz HTTP/1.1\r\nHost: 10.0.0.7:8080\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\n\r\n"

// probeOK sends one probe on a fresh connection and closes it.
func (e *healthEnv) probeOK(t *testing.T) {
	t.Helper()
	c := e.dial(t)
	require.Equal(t, http.StatusOK, c.do(t, kubeletProbe).StatusCode)
	require.NoError(t, c.Close())
}

// waitClosed reads until the server closes the connection and returns how
// long that took. A close shows as EOF, or as a reset when the server hung
// up on bytes it had not read; a read deadline (healthWait) fails the test.
func (c *healthConn) waitClosed(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, c.SetReadDeadline(start.Add(healthWait)))
	n, err := io.Copy(io.Discard, c.br)
	took := time.Since(start)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the server left the connection open")
		require.NoError(t, err)
	}
	require.Zero(t, n, "the server answered instead of closing")
	return took
}

// TestHealthServerConfig: NewHealthServer carries the exported limits.
func TestHealthServerConfig(t *testing.T) {
	srv := NewHealthServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	require.Equal(t, HealthMaxHeaderBytes, srv.MaxHeaderBytes)
	require.Equal(t, 4097, HealthHeaderLimit)
	require.Equal(t, HealthReadHeaderTimeout, srv.ReadHeaderTimeout)
	require.Equal(t, HealthReadTimeout, srv.ReadTimeout)
	require.Equal(t, HealthWriteTimeout, srv.WriteTimeout)
	require.Equal(t, HealthIdleTimeout, srv.IdleTimeout)
	require.NotNil(t, srv.Protocols)
	require.True(t, srv.Protocols.HTTP1())
	require.False(t, srv.Protocols.HTTP2())
	require.False(t, srv.Protocols.UnencryptedHTTP2())
	require.NotNil(t, srv.ErrorLog)
	require.Nil(t, NewHealthServer(http.NotFoundHandler(), nil).ErrorLog)
}

// TestHealthIdleTimeout (a): a keep-alive connection left idle after a
// probe is closed by the server once the idle timeout passes.
func TestHealthIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	env := startHealth(t, healthLimits{readHeader: untested, read: untested, write: untested, idle: idle}, 0)
	c := env.dial(t)
	resp := c.do(t, kubeletProbe)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, resp.Close, "the probe's connection is kept alive")
	took := c.waitClosed(t)
	require.GreaterOrEqual(t, took, idle/2, "closed by the idle timeout, not before")
}

// TestHealthReadHeaderTimeout (b): a client that keeps sending its headers
// a byte at a time is cut off when the header timeout passes, however
// steadily it sends.
func TestHealthReadHeaderTimeout(t *testing.T) {
	const readHeader = 200 * time.Millisecond
	env := startHealth(t, healthLimits{readHeader: readHeader, read: untested, write: untested, idle: untested}, 0)
	c := env.dial(t)
	_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	require.NoError(t, err)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(readHeader / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("a")); err != nil {
					return // the server hung up
				}
			}
		}
	})
	took := c.waitClosed(t)
	close(stop)
	wg.Wait()
	require.GreaterOrEqual(t, took, readHeader/2, "closed by the header timeout, not before")
}

// TestHealthHeaderLimit (c): 8 KiB of headers get 431, while probes and
// scrapes get 200. The bound is HealthHeaderLimit to the byte, request line
// included, which pins net/http's slack.
func TestHealthHeaderLimit(t *testing.T) {
	env := startHealth(t, healthLimits{readHeader: untested, read: untested, write: untested, idle: untested}, 0)

	// 8 KiB of headers, as a Go client sends them.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: healthWait}
	req, err := http.NewRequest(http.MethodGet, "http://"+env.addr+"/healthz", nil)
	require.NoError(t, err)
	req.Header.Set("X-Pad", strings.Repeat("a", 8<<10))
	resp, err := hc.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	// A kubelet probe and a Prometheus scrape.
	env.probeOK(t)
	scrape, err := http.NewRequest(http.MethodGet, "http://"+env.addr+"/metrics", nil)
	require.NoError(t, err)
	scrape.Header.Set("User-Agent", "Prometheus/3.5.0")
	scrape.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"+
		"application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"+
		"text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
	scrape.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "10")
	scrape.Header.Set("Authorization", "Bearer "+strings.Repeat("t", 1500)) // a service account token
	resp, err = hc.Do(scrape)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The exact bound.
	sized := func(n int) string {
		const head, tail = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ", "\r\n\r\n"
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	require.Len(t, sized(HealthHeaderLimit), HealthHeaderLimit)
	require.Equal(t, http.StatusOK, env.dial(t).do(t, sized(HealthHeaderLimit)).StatusCode)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, env.dial(t).do(t, sized(HealthHeaderLimit+1)).StatusCode)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, env.dial(t).do(t, sized(5<<10)).StatusCode,
		"the bound is 4 KiB, not the 8 KiB MaxHeaderBytes 4096 would give")
}

// TestHealthConnectionCap (d): with a cap of 8, eight held connections
// leave no room: a ninth is closed at once, a flood of 1,000 more leaves
// eight open on the server side, and when a held one closes a new probe is
// served.
func TestHealthConnectionCap(t *testing.T) {
	const maxConns = 8
	env := startHealth(t, healthLimits{readHeader: untested, read: untested, write: untested, idle: untested}, maxConns)

	held := make([]*healthConn, maxConns)
	for i := range held {
		held[i] = env.dial(t)
		require.Equal(t, http.StatusOK, held[i].do(t, kubeletProbe).StatusCode)
	}
	require.EqualValues(t, maxConns, env.ln.open.Load())

	// The ninth: closed at once, without an answer.
	ninth := env.dial(t)
	took := ninth.waitClosed(t)
	require.Less(t, took, healthWait)
	// onShed runs just after the close the client saw.
	testutil.WaitFor(t, healthWait, "onShed", func() bool { return env.shed.Load() == 1 })

	// A flood beyond the cap, 20 at a time.
	const flood, workers = 1000, 20
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range flood / workers {
				if !shedAtOnce(env.addr) {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, failed.Load(), "every connection beyond the cap is closed at once")
	testutil.WaitFor(t, healthWait, "onShed for the flood", func() bool { return env.shed.Load() == 1+flood })
	require.EqualValues(t, maxConns, env.ln.open.Load())
	open, most := env.stats.get()
	require.Equal(t, maxConns, open, "server-side connections after the flood")
	require.Equal(t, maxConns, most, "server-side connections at most, ever")

	// The held connections are still served.
	for _, c := range held {
		require.Equal(t, http.StatusOK, c.do(t, kubeletProbe).StatusCode)
	}

	// One closes: its slot is released, and a new probe is served.
	require.NoError(t, held[0].Close())
	testutil.WaitFor(t, healthWait, "the closed connection's slot", func() bool {
		return env.ln.open.Load() == maxConns-1
	})
	c := env.dial(t)
	require.Equal(t, http.StatusOK, c.do(t, kubeletProbe).StatusCode)
	require.EqualValues(t, maxConns, env.ln.open.Load())
	require.EqualValues(t, 1+flood, env.shed.Load(), "nothing shed since")
}

// shedAtOnce connects and reports whether the server closed the connection
// without a word before healthWait.
func shedAtOnce(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, healthWait)
	if err != nil {
		return false
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(healthWait)); err != nil {
		return false
	}
	n, err := c.Read(make([]byte, 1))
	return n == 0 && errors.Is(err, io.EOF)
}

// TestHealthServerErrorLog: net/http's complaints go to the logger at
// debug level.
func TestHealthServerErrorLog(t *testing.T) {
	var buf testutil.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := NewHealthServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	}), logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	}()

	c, err := net.DialTimeout("tcp", ln.Addr().String(), healthWait)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, kubeletProbe)
	require.NoError(t, err)
	testutil.WaitFor(t, healthWait, "the panic in the log", func() bool {
		return strings.Contains(buf.String(), "http: panic serving")
	})
	require.Contains(t, buf.String(), "level=DEBUG msg=http.server")
}

// limitedTCP returns a limited listener on 127.0.0.1:0 with its shed counter.
func limitedTCP(t *testing.T, limit int) (*limitListener, *atomic.Int64) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var shed atomic.Int64
	ln, ok := LimitListener(inner, limit, func() { shed.Add(1) }).(*limitListener)
	require.True(t, ok)
	t.Cleanup(func() { _ = ln.Close() })
	return ln, &shed
}

// limitAcceptAsync runs one Accept in the background.
func limitAcceptAsync(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func limitDial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), healthWait)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestLimitListenerSheds: an Accept with every slot taken does not wait for
// one; it sheds what arrives and returns the first connection that finds a
// slot free.
func TestLimitListenerSheds(t *testing.T) {
	ln, shed := limitedTCP(t, 1)
	limitDial(t, ln)
	first, ok := <-limitAcceptAsync(ln)
	require.True(t, ok)

	pending := limitAcceptAsync(ln)
	for i := range 3 {
		c := limitDial(t, ln)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(healthWait)))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF, "over-cap connection %d", i)
	}
	testutil.WaitFor(t, healthWait, "onShed", func() bool { return shed.Load() == 3 })
	select {
	case c := <-pending:
		require.FailNowf(t, "Accept returned with every slot taken", "%v", c)
	default:
	}

	require.NoError(t, first.Close())
	limitDial(t, ln)
	var second net.Conn
	select {
	case second, ok = <-pending:
		require.True(t, ok)
	case <-time.After(healthWait):
		require.FailNow(t, "Accept did not return once a slot was free")
	}
	require.EqualValues(t, 1, ln.open.Load())
	require.NoError(t, second.Close())
	require.EqualValues(t, 3, shed.Load())

	// Closed, the listener's Accept reports it.
	require.NoError(t, ln.Close())
	_, err := ln.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestLimitListenerReleaseOnce: closing a connection many times, from many
// goroutines at once, frees its slot once.
func TestLimitListenerReleaseOnce(t *testing.T) {
	ln, _ := limitedTCP(t, 2)
	limitDial(t, ln)
	limitDial(t, ln)
	a, err := ln.Accept()
	require.NoError(t, err)
	b, err := ln.Accept()
	require.NoError(t, err)
	defer b.Close()
	require.EqualValues(t, 2, ln.open.Load())

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { _ = a.Close() })
	}
	wg.Wait()
	require.Error(t, a.Close(), "already closed")
	require.EqualValues(t, 1, ln.open.Load())
}

// TestLimitListenerConcurrent: clients connecting and hanging up while the
// server accepts and closes never take the count past the limit or below
// zero, and every slot comes back.
func TestLimitListenerConcurrent(t *testing.T) {
	const limit, clients, each = 4, 16, 25
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var refused atomic.Int64
	ln, ok := LimitListener(inner, limit, nil).(*limitListener)
	require.True(t, ok)

	var served, most atomic.Int64
	var serving sync.WaitGroup
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := ln.open.Load()
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			serving.Go(func() {
				defer c.Close()
				_, _ = io.WriteString(c, "x")
				served.Add(1)
			})
		}
	}()

	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				c, err := net.DialTimeout("tcp", inner.Addr().String(), healthWait)
				if err != nil {
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(healthWait))
				if n, _ := c.Read(make([]byte, 1)); n == 0 {
					refused.Add(1)
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	require.NoError(t, ln.Close())
	<-accepted
	serving.Wait()
	require.EqualValues(t, clients*each, served.Load()+refused.Load())
	require.Positive(t, served.Load())
	require.LessOrEqual(t, most.Load(), int64(limit))
	require.Zero(t, ln.open.Load(), "every slot released")
}

// TestLimitListenerCloseWrite: CloseWrite reaches the TCP connection, so
// the peer reads EOF while it may still write.
func TestLimitListenerCloseWrite(t *testing.T) {
	ln, _ := limitedTCP(t, 1)
	c := limitDial(t, ln)
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	cw, ok := s.(interface{ CloseWrite() error })
	require.True(t, ok)
	require.NoError(t, cw.CloseWrite())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(healthWait)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	_, err = c.Write([]byte("still open"))
	require.NoError(t, err)
}

func TestLimitListenerBadLimit(t *testing.T) {
	require.Panics(t, func() { LimitListener(nil, 0, nil) })
}
