package server

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the health listener (--health-listen): /healthz, /readyz and
// /metrics over plain, unauthenticated HTTP. Anyone who reaches the address
// (on a pod IP: anything in the cluster network) may connect, so every
// connection is bounded in time, in header size and in number.
const (
	// HealthMaxHeaderBytes is the health server's http.Server.MaxHeaderBytes.
	// It is 1, the smallest value net/http honours (0 would select its 1 MiB
	// default), because net/http reads MaxHeaderBytes plus 4096 bytes of
	// bufio slack before it answers 431: the effective bound is
	// HealthHeaderLimit, 4 KiB and one byte.
	HealthMaxHeaderBytes = 1
	// HealthHeaderLimit is the effective bound on a request's line and
	// headers, CRLFs included: HealthMaxHeaderBytes plus net/http's 4096
	// bytes of slack, 4097 bytes. A request that needs more gets net/http's
	// plain "431 Request Header Fields Too Large" and the connection is
	// closed. A kubelet probe (~150 bytes) or a Prometheus scrape (~500
	// bytes, ~2 KiB with a bearer token) fits with room to spare.
	HealthHeaderLimit = HealthMaxHeaderBytes + netHTTPHeaderSlack
	// HealthReadHeaderTimeout bounds the time from accepting a connection
	// (or from the end of the previous request) to the end of a request's
	// headers: a client trickling its headers is cut off after it, however
	// steadily it sends.
	HealthReadHeaderTimeout = 5 * time.Second
	// HealthReadTimeout bounds reading a whole request, body included.
	HealthReadTimeout = 10 * time.Second
	// HealthWriteTimeout bounds the time from the end of a request's
	// headers to the end of its response: generous, since a /metrics scrape
	// gathers and writes every collector.
	HealthWriteTimeout = 30 * time.Second
	// HealthIdleTimeout bounds how long a keep-alive connection may wait
	// for its next request; the server then closes it.
	HealthIdleTimeout = 30 * time.Second
	// HealthMaxConnections is the cap to give LimitListener for the health
	// listener: more than a kubelet and a few scrapers ever hold at once,
	// and far below the descriptor limit the API needs for itself.
	HealthMaxConnections = 64
)

// netHTTPHeaderSlack is what net/http adds to MaxHeaderBytes when it limits
// the reading of a request's headers (Server.initialReadLimitSize).
const netHTTPHeaderSlack = 4096

// healthLimits are the time limits newHealthServer applies; tests shorten
// them.
type healthLimits struct {
	readHeader, read, write, idle time.Duration
}

var defaultHealthLimits = healthLimits{
	readHeader: HealthReadHeaderTimeout,
	read:       HealthReadTimeout,
	write:      HealthWriteTimeout,
	idle:       HealthIdleTimeout,
}

// NewHealthServer wraps the health handler (see Health) in an http.Server
// with the health listener's limits: the Health* timeouts, a header bound
// of HealthHeaderLimit bytes, HTTP/1.1 only (as NewHTTPServer, and for the
// same reason: Go's HTTP/2 server does not apply the header timeouts), and
// its error log sent to logger at debug level (nil: net/http's default
// logger).
//
// The connection cap is the listener's business; serve it as
//
//	srv.Serve(LimitListener(ln, HealthMaxConnections, onShed))
func NewHealthServer(h http.Handler, logger *slog.Logger) *http.Server {
	return newHealthServer(h, logger, defaultHealthLimits)
}

func newHealthServer(h http.Handler, logger *slog.Logger, lim healthLimits) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Protocols:         &protocols,
		Handler:           h,
		MaxHeaderBytes:    HealthMaxHeaderBytes,
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
	}
	if logger != nil {
		srv.ErrorLog = log.New(&slogWriter{logger}, "", 0)
	}
	return srv
}

// LimitListener returns a listener that has at most limit connections open
// at once (limit must be at least 1). A connection accepted while limit are
// open is
// closed at once and onShed, if not nil, is called; Accept then goes on to
// the next connection. A connection's slot is released when it is first
// closed, after its descriptor is, so the process never holds more than
// limit of its descriptors. onShed runs on the accepting goroutine: it must be
// quick (count a metric; rate-limit any log line).
//
// It sheds rather than blocks, unlike golang.org/x/net/netutil.LimitListener
// (whose Accept waits for a free slot before it accepts). Waiting leaves the
// excess in the kernel's accept queue: each client there believes it is
// connected and hangs until its own timeout, the queue fills and new SYNs are
// dropped, and when a slot frees the oldest queued connection (most likely
// the flood's) is served before a probe that arrived since. Shedding answers
// every over-cap client at once with a closed connection (a failed probe is
// then failed fast, and retried by its prober), costs one accept and one
// close, and keeps the queue empty so that a freed slot goes to the next
// client to connect. It also spares the x/net dependency.
//
// Wrap the plain TCP listener, beneath any TLS (ServeTLS, tls.NewListener):
// the conns it returns are not *tls.Conn. They pass CloseWrite through to
// the underlying connection.
func LimitListener(ln net.Listener, limit int, onShed func()) net.Listener {
	if limit < 1 {
		panic(fmt.Sprintf("server.LimitListener: limit %d, want at least 1", limit))
	}
	return &limitListener{Listener: ln, limit: int64(limit), onShed: onShed}
}

type limitListener struct {
	net.Listener
	limit  int64
	onShed func()
	open   atomic.Int64 // connections accepted and not yet closed; never above limit
}

// acquire takes a slot if one is free.
func (l *limitListener) acquire() bool {
	for {
		n := l.open.Load()
		if n >= l.limit {
			return false
		}
		if l.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *limitListener) release() { l.open.Add(-1) }

// Accept returns the next connection for which a slot is free, shedding
// those that arrive while none is; it returns the underlying listener's
// errors as they are.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.acquire() {
			return &limitConn{Conn: c, release: l.release}, nil
		}
		_ = c.Close()
		if l.onShed != nil {
			l.onShed()
		}
	}
}

// limitConn holds one of its listener's slots until it is closed.
type limitConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
}

// Close closes the connection and releases its slot; later calls release
// nothing more.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// CloseWrite shuts down the writing side if the underlying connection can
// (a *net.TCPConn can). net/http relies on it to deliver an error answer,
// such as a 431, before it hangs up.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("server.LimitListener: %T has no CloseWrite: %w", c.Conn, errors.ErrUnsupported)
}
