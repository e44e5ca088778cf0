package server

import (
	"bytes"
	"container/list"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/pkg/api"
)

// ConnLimits bounds the API's connections, so that no workload holding an
// SVID of the trust domain can exhaust tetherd's memory or descriptors.
type ConnLimits struct {
	// MaxConnections caps open connections, in the handshake or past it. A
	// connection beyond the cap is closed as soon as it is accepted.
	MaxConnections int
	// MaxPerIdentity caps the established connections of one SPIFFE ID. A
	// connection beyond it is closed right after its handshake.
	MaxPerIdentity int
	// MaxHandshakes caps the connections still in their TLS handshake (not
	// yet authenticated). A new connection beyond it pushes out the oldest
	// one, so stalled handshakes cannot lock out a real client.
	MaxHandshakes int
	// HandshakeTimeout bounds one TLS handshake.
	HandshakeTimeout time.Duration
	// MaxAge bounds a connection's life: a request on an older connection is
	// answered with Connection: close, so the client reconnects (and is
	// verified again against the current trust bundle).
	MaxAge time.Duration
}

// Defaults of ConnLimits, tetherd's flag defaults.
const (
	DefaultMaxConnections   = 1024
	DefaultMaxPerIdentity   = 32
	DefaultMaxHandshakes    = 256
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultMaxAge           = 10 * time.Minute
)

// Reasons a connection is refused, as logged and counted.
const (
	RefusedMaxConnections = "max_connections"
	RefusedPerIdentity    = "max_connections_per_identity"
	RefusedEvicted        = "handshake_evicted"
	RefusedHandshake      = "handshake_failed"
)

func (l ConnLimits) withDefaults() ConnLimits {
	l.MaxConnections = orDefault(l.MaxConnections, DefaultMaxConnections)
	l.MaxPerIdentity = orDefault(l.MaxPerIdentity, DefaultMaxPerIdentity)
	l.MaxHandshakes = orDefault(l.MaxHandshakes, DefaultMaxHandshakes)
	l.HandshakeTimeout = orDefault(l.HandshakeTimeout, DefaultHandshakeTimeout)
	l.MaxAge = orDefault(l.MaxAge, DefaultMaxAge)
	return l
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Listener terminates TLS for the API and enforces ConnLimits. Accept
// admits a connection (or sheds it over MaxConnections) and returns it at
// once; its TLS handshake runs later in the goroutine that serves it (see
// Conn), so a stalled handshake holds up no other connection, and one
// goroutine and one stack serve a connection from its first byte to its last.
// Serve it with http.Server.Serve (not ServeTLS): the connections it returns
// are TLS, and auth.ConnContext finds their state.
type Listener struct {
	raw    net.Listener
	tlsCfg *tls.Config
	lim    ConnLimits
	log    *slog.Logger
	now    func() time.Time

	refusedTotal *prometheus.CounterVec

	ctx    context.Context // cancelled by Close: aborts the handshakes in progress
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	backoff time.Duration // after a failed accept, guarded by mu
	open    int
	pending *list.List // *Conn in their handshake (or waiting for it), oldest first
	perID   map[spiffeid.ID]int
}

// NewListener serves the API's connections accepted on raw. tlsCfg must
// verify client certificates (auth.ServerTLSConfig does). reg, if not nil,
// receives the connection metrics; logger, if not nil, the refusals.
func NewListener(raw net.Listener, tlsCfg *tls.Config, lim ConnLimits, logger *slog.Logger, reg prometheus.Registerer) *Listener {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{
		raw: raw, tlsCfg: tlsCfg, lim: lim.withDefaults(), log: logger, now: time.Now,
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_api_connections_refused_total",
			Help: "API connections closed by the connection limits or a failed TLS handshake, by reason.",
		}, []string{"reason"}),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		pending: list.New(), perID: make(map[spiffeid.ID]int),
	}
	for _, r := range []string{RefusedMaxConnections, RefusedPerIdentity, RefusedEvicted, RefusedHandshake} {
		l.refusedTotal.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(l.refusedTotal, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tether_api_connections",
			Help: "Open API connections, in their TLS handshake or past it.",
		}, func() float64 { return float64(l.Open()) }))
	}
	return l
}

// Open is the number of open connections, handshaking or established.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next admitted connection, its handshake still to come:
// it runs at the connection's first ConnectionState, Read or Write. A
// connection over MaxConnections is closed and Accept waits for the next.
// After a failed accept (out of descriptors and the like) it backs off as
// net/http does rather than spin.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.stop()
				return nil, net.ErrClosed
			}
			if !l.wait(err) {
				return nil, net.ErrClosed
			}
			continue
		}
		l.mu.Lock()
		l.backoff = 0
		l.mu.Unlock()
		if c := l.admit(raw); c != nil {
			return c, nil
		}
	}
}

// wait backs off after the failed accept err; false if the listener closed
// meanwhile.
func (l *Listener) wait(err error) bool {
	l.mu.Lock()
	l.backoff = min(max(2*l.backoff, 5*time.Millisecond), time.Second)
	backoff := l.backoff
	l.mu.Unlock()
	l.log.Warn("api.accept_failed", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// Close stops accepting and aborts the handshakes in progress. Established
// connections are the http.Server's to close.
func (l *Listener) Close() error {
	err := l.raw.Close()
	l.stop()
	return err
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.raw.Addr() }

func (l *Listener) stop() {
	l.once.Do(func() {
		l.cancel()
		close(l.done)
	})
}

// admit counts a new connection, or sheds it (nil). Over MaxHandshakes, the
// oldest connection still before or in its handshake is pushed out.
func (l *Listener) admit(raw net.Conn) *Conn {
	rc := &recordConn{Conn: raw}
	c := &Conn{Conn: tls.Server(rc, l.tlsCfg), raw: raw, rc: rc, l: l, accepted: l.now()}
	if sc, ok := raw.(syscall.Conn); ok && canPeek {
		if rc, err := sc.SyscallConn(); err == nil {
			c.sock, c.readable = rc, sockReadable
		}
	}
	l.mu.Lock()
	if l.open >= l.lim.MaxConnections {
		l.mu.Unlock()
		_ = raw.Close()
		l.refused(RefusedMaxConnections, spiffeid.ID{}, raw.RemoteAddr())
		return nil
	}
	l.open++
	c.elem = l.pending.PushBack(c)
	var evicted *Conn
	if l.pending.Len() > l.lim.MaxHandshakes {
		evicted = l.pending.Remove(l.pending.Front()).(*Conn) //nolint:forcetypeassert // the list holds *Conn only
		evicted.elem = nil
		evicted.evicted.Store(true)
	}
	l.mu.Unlock()
	if evicted != nil {
		// Its handshake fails on the closed socket, and its Close frees
		// its slot.
		_ = evicted.raw.Close()
		l.refused(RefusedEvicted, spiffeid.ID{}, evicted.raw.RemoteAddr())
	}
	return c
}

// handshake runs c's TLS handshake, bounded by HandshakeTimeout and aborted
// by Close, then counts c against its SPIFFE ID's cap. On failure c is
// closed, and the error is what c's Reads and Writes return.
func (l *Listener) handshake(c *Conn) error {
	ctx, cancel := context.WithTimeout(l.ctx, max(0, l.lim.HandshakeTimeout-l.now().Sub(c.accepted)))
	err := c.HandshakeContext(ctx)
	cancel()
	l.mu.Lock()
	if c.elem != nil {
		l.pending.Remove(c.elem)
		c.elem = nil
	}
	l.mu.Unlock()
	if err != nil {
		answerPlainHTTP(err)
		if !c.evicted.Load() { // an evicted one was counted as such, once
			l.refusedTotal.WithLabelValues(RefusedHandshake).Inc()
			l.log.LogAttrs(context.Background(), slog.LevelDebug, "connection.handshake_failed",
				slog.String("error", err.Error()), slog.String("remote_addr", c.raw.RemoteAddr().String()))
		}
		_ = c.Close()
		return err
	}
	// The handshake verified the chain and the single SPIFFE ID.
	id, err := x509svid.IDFromCert(c.Conn.ConnectionState().PeerCertificates[0])
	if err != nil {
		_ = c.Close()
		return err
	}
	l.mu.Lock()
	if l.perID[id] >= l.lim.MaxPerIdentity {
		l.mu.Unlock()
		_ = c.Close()
		l.refused(RefusedPerIdentity, id, c.raw.RemoteAddr())
		return errors.New("server: connections of " + id.String() + " over --max-connections-per-identity")
	}
	l.perID[id]++
	c.id = id
	l.mu.Unlock()
	return nil
}

// release frees c's slots; Conn.Close calls it once.
func (l *Listener) release(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if c.elem != nil {
		l.pending.Remove(c.elem)
		c.elem = nil
	}
	if !c.id.IsZero() {
		if l.perID[c.id]--; l.perID[c.id] <= 0 {
			delete(l.perID, c.id)
		}
	}
}

func (l *Listener) refused(reason string, id spiffeid.ID, remote net.Addr) {
	l.refusedTotal.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{slog.String("reason", reason)}
	if !id.IsZero() {
		attrs = append(attrs, slog.String("spiffe_id", id.String()))
	}
	attrs = append(attrs, slog.String("remote_addr", remote.String()))
	l.log.LogAttrs(context.Background(), slog.LevelWarn, "connection.refused", attrs...)
}

// answerPlainHTTP answers a plain-HTTP request sent to the TLS port the way
// net/http does, in the API's JSON error format.
func answerPlainHTTP(err error) {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil || !looksLikeHTTP(re.RecordHeader) {
		return
	}
	_, _ = re.Conn.Write(jsonErrorResponse(http.StatusBadRequest, api.CodeBadRequest, "this is an HTTPS server: use https://"))
	_ = re.Conn.Close()
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

// Conn is an API connection accepted by Listener: TLS, counted until it is
// closed. Its handshake runs once, in the goroutine that first asks for its
// ConnectionState or reads or writes it (net/http's, which serves the
// connection: it asks for the state first); a connection whose handshake
// failed, or whose SPIFFE ID is over its cap, is closed, has an empty
// state, and fails every Read and Write.
type Conn struct {
	*tls.Conn
	raw      net.Conn
	l        *Listener
	id       spiffeid.ID // set by the handshake
	accepted time.Time
	elem     *list.Element // in l.pending until the handshake ends; guarded by l.mu
	evicted  atomic.Bool   // pushed out of l.pending by a newer handshake: its failure is not counted again
	once     sync.Once

	shake    sync.Once
	shakeErr error // what the handshake ended with; read after shake

	// rc is what TLS reads the socket through; sock is the socket, by which
	// a one-byte Read waits (see Read), nil where it has no file descriptor
	// to peek at.
	rc       *recordConn
	sock     syscall.RawConn
	readable func(fd uintptr) bool // sockReadable, bound once
	// drained: the last Read returned less than it was asked, so TLS holds
	// no plaintext (see recordConn for the rest).
	drained atomic.Bool
}

// handshake runs the connection's handshake once; every later call returns
// its outcome. The error is a read error to net/http, which then closes the
// connection without answering.
func (c *Conn) handshake() error {
	c.shake.Do(func() {
		if err := c.l.handshake(c); err != nil {
			c.shakeErr = &net.OpError{Op: "read", Net: "tcp", Source: c.raw.LocalAddr(), Addr: c.raw.RemoteAddr(), Err: err}
		}
	})
	return c.shakeErr
}

// ConnectionState runs the handshake if it has not run, then returns the
// connection's TLS state (empty if the handshake failed).
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.handshake() != nil {
		return tls.ConnectionState{}
	}
	return c.Conn.ConnectionState()
}

// Read runs the handshake if it has not run, then reads.
//
// A one-byte Read first waits until the socket has bytes (or its end, or an
// error) when nothing is left to read before them: TLS holds no plaintext
// (the last Read returned less than it was asked) and no record (see
// recordConn). That read is net/http's: while a handler runs, a goroutine of
// its own reads one byte to notice the client hanging up, and the handler's
// end cuts it short with a past read deadline, which ends the wait here too.
// Waiting in TLS instead would take that goroutine, started with a small
// stack, through TLS's record reading (about 1.3 KiB of frames), growing
// and copying its stack at every request (about 2 µs here: bench/e2e -perf,
// runtime.newstack).
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	if len(p) == 1 && c.sock != nil && c.drained.Load() && c.rc.empty() {
		if err := c.sock.Read(c.readable); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	c.drained.Store(n < len(p))
	return n, err
}

// recordConn is the socket as TLS reads it: it gives TLS no byte past the
// end of the record TLS is reading, and keeps what follows, so that once TLS
// has given out a record's plaintext it holds nothing more of the
// connection: the next bytes are here or still on the socket. (TLS itself
// takes off the socket whatever has arrived, records to come included, and
// a wait on the socket could not tell.) It reads the socket straight into
// TLS's buffer; it keeps bytes, in a pooled buffer, only when several
// records arrive at once. Reads are TLS's, one at a time, under its lock.
type recordConn struct {
	net.Conn
	kept *[]byte // bytes read off the socket, not yet given to TLS; nil if none
	off  int     // (*kept)[off:] are still to give
	rec  recordState
	// keeping is how many bytes are kept, for empty, which another
	// goroutine calls between TLS's reads.
	keeping atomic.Int32
}

// keptBufs are recordConn's buffers for the bytes it keeps.
var keptBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// empty reports whether rc keeps no byte for TLS.
func (rc *recordConn) empty() bool { return rc.keeping.Load() == 0 }

func (rc *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if rc.kept != nil {
		src := (*rc.kept)[rc.off:]
		n := rc.rec.advance(src[:min(len(src), len(p))])
		copy(p, src[:n])
		rc.off += n
		if rc.off == len(*rc.kept) {
			if cap(*rc.kept) <= 64<<10 {
				*rc.kept = (*rc.kept)[:0]
				keptBufs.Put(rc.kept)
			}
			rc.kept, rc.off = nil, 0
		}
		rc.keeping.Add(-int32(n)) //nolint:gosec // G115: at most what one socket read brought
		return n, nil
	}
	n, err := rc.Conn.Read(p)
	if m := rc.rec.advance(p[:n]); m < n {
		b := keptBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds *[]byte only
		*b = append((*b)[:0], p[m:n]...)
		rc.kept, rc.off = b, 0
		rc.keeping.Store(int32(n - m)) //nolint:gosec // G115: at most len(p)
		// The socket's error, if any, comes again at the next read.
		return m, nil
	}
	return n, err
}

// recordState follows the TLS records in the bytes given to TLS: how much of
// the current record's 5-byte header (type, version, length) and body is
// still to come.
type recordState struct {
	hdrN int // header bytes seen, 0 to 5
	left int // body bytes to come, once hdrN is 5
}

// advance takes b, the bytes that come next, up to the end of the current
// record, and returns how many it took: all of b if the record goes on past
// it.
func (s *recordState) advance(b []byte) int {
	i := 0
	for i < len(b) {
		if s.hdrN < 5 {
			switch s.hdrN {
			case 3:
				s.left = int(b[i]) << 8
			case 4:
				s.left |= int(b[i])
			}
			s.hdrN++
			i++
			if s.hdrN < 5 || s.left > 0 {
				continue
			}
		} else {
			k := min(s.left, len(b)-i)
			i += k
			if s.left -= k; s.left > 0 {
				continue
			}
		}
		s.hdrN = 0 // the record ends here
		return i
	}
	return i
}

// Close closes the connection and frees its slots.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// Accepted is when the connection was accepted.
func (c *Conn) Accepted() time.Time { return c.accepted }

// cannedHeaders are the header lines of the plain-text answers that
// net/http writes by itself, before any handler runs, to a request it cannot
// parse (431 for headers over MaxHeaderBytes, 400 for a malformed request).
// A response written through a ResponseWriter never ends its headers that
// way: its own headers are sorted (Connection before Content-Type), and the
// ones net/http adds after them always include Date.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Write runs the handshake if it has not run. It turns net/http's
// plain-text error answers into the API's JSON error format; everything
// else passes through.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	if len(p) < 512 && bytes.HasPrefix(p, []byte("HTTP/1.1 ")) && bytes.Contains(p, []byte(cannedHeaders)) {
		if status, err := strconv.Atoi(string(p[9:12])); err == nil {
			code, msg := api.CodeBadRequest, "malformed HTTP request"
			if status == http.StatusRequestHeaderFieldsTooLarge {
				code, msg = api.CodeHeadersTooLarge, fmt.Sprintf("request headers over %d KiB", MaxHeaderBytes>>10)
			}
			if _, err := c.Conn.Write(jsonErrorResponse(status, code, msg)); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// jsonErrorResponse is a whole HTTP/1.1 error answer that closes the
// connection.
func jsonErrorResponse(status int, code api.Code, msg string) []byte {
	body, _ := json.Marshal(api.ErrorResponse{Error: &api.Error{Code: code, Message: msg}}) // cannot fail: strings only
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

type connKey struct{}

// connContext remembers the API connection of a request (for MaxAge).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if ac, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, ac)
	}
	return ctx
}

// tooOld reports whether r came over an API connection older than its
// listener's MaxAge.
func tooOld(r *http.Request, now time.Time) bool {
	c, ok := r.Context().Value(connKey{}).(*Conn)
	return ok && now.Sub(c.accepted) >= c.l.lim.MaxAge
}
