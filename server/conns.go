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

// Listener terminates TLS for the API and enforces ConnLimits. Accept returns
// only connections whose handshake succeeded and that fit the caps; the
// handshakes run in their own goroutines, so a stalled one never holds up
// the others. Serve it with http.Server.Serve (not ServeTLS): the returned
// connections are already TLS, and auth.ConnContext finds their state.
type Listener struct {
	raw    net.Listener
	tlsCfg *tls.Config
	lim    ConnLimits
	log    *slog.Logger
	now    func() time.Time

	refusedTotal *prometheus.CounterVec

	ready  chan *Conn
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	err    error // why accepting stopped; set before done is closed

	mu      sync.Mutex
	open    int
	pending *list.List // *Conn in their handshake, oldest first
	perID   map[spiffeid.ID]int
}

// NewListener starts accepting on raw. tlsCfg must verify client
// certificates (auth.ServerTLSConfig does). reg, if not nil, receives the
// connection metrics; logger, if not nil, the refusals.
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
		ready: make(chan *Conn), ctx: ctx, cancel: cancel, done: make(chan struct{}),
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
	go l.acceptLoop()
	return l
}

// Open is the number of open connections, handshaking or established.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next authenticated connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close stops accepting and aborts the handshakes in progress. Established
// connections are the http.Server's to close.
func (l *Listener) Close() error {
	err := l.raw.Close()
	l.stop(net.ErrClosed)
	return err
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.raw.Addr() }

func (l *Listener) stop(err error) {
	l.once.Do(func() {
		l.err = err
		l.cancel()
		close(l.done)
	})
}

func (l *Listener) acceptLoop() {
	var backoff time.Duration
	for {
		raw, err := l.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.stop(net.ErrClosed)
				return
			}
			// Out of descriptors and the like: back off as net/http does
			// rather than spin, and keep serving what is open.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("api.accept_failed", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				return
			}
		}
		backoff = 0
		l.admit(raw)
	}
}

// admit counts a new connection and starts its handshake, or sheds it.
func (l *Listener) admit(raw net.Conn) {
	c := &Conn{raw: raw, l: l, accepted: l.now()}
	l.mu.Lock()
	if l.open >= l.lim.MaxConnections {
		l.mu.Unlock()
		_ = raw.Close()
		l.refused(RefusedMaxConnections, spiffeid.ID{}, raw.RemoteAddr())
		return
	}
	l.open++
	c.elem = l.pending.PushBack(c)
	var evicted *Conn
	if l.pending.Len() > l.lim.MaxHandshakes {
		evicted = l.pending.Remove(l.pending.Front()).(*Conn) //nolint:forcetypeassert // the list holds *Conn only
		evicted.elem = nil
	}
	l.mu.Unlock()
	if evicted != nil {
		// Its handshake fails on the closed socket and releases its slot.
		_ = evicted.raw.Close()
		l.refused(RefusedEvicted, spiffeid.ID{}, evicted.raw.RemoteAddr())
	}
	go l.handshake(c)
}

func (l *Listener) handshake(c *Conn) {
	c.Conn = tls.Server(c.raw, l.tlsCfg)
	_ = c.raw.SetDeadline(c.accepted.Add(l.lim.HandshakeTimeout))
	ctx, cancel := context.WithTimeout(l.ctx, l.lim.HandshakeTimeout)
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
		l.refusedTotal.WithLabelValues(RefusedHandshake).Inc()
		l.log.LogAttrs(context.Background(), slog.LevelDebug, "connection.handshake_failed",
			slog.String("error", err.Error()), slog.String("remote_addr", c.raw.RemoteAddr().String()))
		_ = c.Close()
		return
	}
	_ = c.raw.SetDeadline(time.Time{})
	// The handshake verified the chain and the single SPIFFE ID.
	id, err := x509svid.IDFromCert(c.ConnectionState().PeerCertificates[0])
	if err != nil {
		_ = c.Close()
		return
	}
	l.mu.Lock()
	if l.perID[id] >= l.lim.MaxPerIdentity {
		l.mu.Unlock()
		_ = c.Close()
		l.refused(RefusedPerIdentity, id, c.raw.RemoteAddr())
		return
	}
	l.perID[id]++
	c.id = id
	l.mu.Unlock()
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
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

// Conn is an API connection accepted by Listener: TLS, authenticated, and
// counted until it is closed.
type Conn struct {
	*tls.Conn
	raw      net.Conn
	l        *Listener
	id       spiffeid.ID
	accepted time.Time
	elem     *list.Element // in l.pending while handshaking; guarded by l.mu
	once     sync.Once
}

// Close closes the connection and frees its slots.
func (c *Conn) Close() error {
	var err error
	if c.Conn != nil {
		err = c.Conn.Close()
	} else {
		err = c.raw.Close()
	}
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

// Write turns net/http's plain-text error answers into the API's JSON error
// format; everything else passes through.
func (c *Conn) Write(p []byte) (int, error) {
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
