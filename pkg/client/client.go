package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Client is a tetherd client. It is safe for concurrent use by several
// goroutines. Create it with New.
type Client struct {
	base      *url.URL
	serverID  spiffeid.ID
	svids     x509svid.Source
	bundles   x509bundle.Source
	store     TokenStore
	autoLogin bool
	log       *slog.Logger

	// connMu guards the connection generation: tr is the transport whose
	// connections were (or will be) made with the leaf whose DER is leaf.
	connMu  sync.Mutex
	tr      *http.Transport
	leaf    []byte
	retired []*http.Transport

	// auth is a lock (a channel, so that waiting honours the context) that
	// serialises logins and rebinds: concurrent requests that meet the same
	// ended or rotated session recover it once.
	auth chan struct{}
}

// Option configures a Client.
type Option func(*Client)

// WithTokenStore keeps the session token in store instead of in memory, for
// example to share it between runs of a program.
func WithTokenStore(store TokenStore) Option {
	return func(c *Client) {
		if store != nil {
			c.store = store
		}
	}
}

// WithAutoLogin says whether requests (Do and the typed calls that need a
// session) log in by themselves when there is no session or it has ended. It
// is on by default. Off, a request without a stored token fails with ErrNoSession and
// an ended session is returned to the caller as is; rebinding after an SVID
// rotation still happens, as it keeps the same session.
func WithAutoLogin(enabled bool) Option {
	return func(c *Client) { c.autoLogin = enabled }
}

// WithLogger makes the client log logins, rebinds and retries (never a
// token) at debug level. The client is silent by default.
func WithLogger(logger *slog.Logger) Option {
	return func(c *Client) {
		if logger != nil {
			c.log = logger
		}
	}
}

// New returns a client of the tetherd at serverURL (https://host:port) whose
// SPIFFE ID must be exactly serverID. The client presents the SVID of svids
// and verifies tetherd against bundles; a service connected to the Workload
// API passes its *workloadapi.X509Source for both. The client does not close
// the sources.
func New(serverURL string, serverID spiffeid.ID, svids x509svid.Source, bundles x509bundle.Source, opts ...Option) (*Client, error) {
	base, err := ParseServerURL(serverURL)
	if err != nil {
		return nil, err
	}
	if serverID.IsZero() {
		return nil, errors.New("client: the server's SPIFFE ID is required")
	}
	if svids == nil || bundles == nil {
		return nil, errors.New("client: an X.509 SVID source and a bundle source are required")
	}
	c := &Client{
		base:      base,
		serverID:  serverID,
		svids:     svids,
		bundles:   bundles,
		store:     new(memoryStore),
		autoLogin: true,
		log:       slog.New(slog.DiscardHandler),
		auth:      make(chan struct{}, 1),
	}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// ParseServerURL checks a tetherd URL as New does, accepting
// https://host[:port][/prefix] and nothing else, and returns it in the form
// ServerURL reports (no trailing slash): a program can key what it keeps per
// server (the tether CLI names its token cache file after it) before it makes
// the client.
func ParseServerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("client: server URL: %w", err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("client: server URL %q: the scheme must be https", raw)
	case u.Host == "":
		return nil, fmt.Errorf("client: server URL %q: no host", raw)
	case u.User != nil, u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("client: server URL %q: only scheme, host, port and path are allowed", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// ServerURL is the URL of tetherd the client talks to.
func (c *Client) ServerURL() string { return c.base.String() }

// ServerID is the SPIFFE ID tetherd must present.
func (c *Client) ServerID() spiffeid.ID { return c.serverID }

// Do sends req to tetherd with the session token: the one way, next to the
// typed calls, to send a request. It attaches the token (logging in first
// when there is none, unless auto-login is off); on 401 certificate_rotated
// it rebinds, on 401 session_ended or invalid_token it logs in again (and on
// 401 insufficient_user_authentication, a service's demand for a fresher
// login, RFC 9470: auth.WithFreshLogin), and it
// sends the request once more if its body can be sent again. A request whose
// URL has no host goes to the client's server URL (with its path prefix):
// client.Do(http.NewRequestWithContext(ctx, "GET", "/v1/sessions", nil)).
// A request to any other host is refused, and so is an answer that
// redirects (an *Error unexpected_response with the 3xx status): the token travels to tetherd and nowhere else.
// req is not changed; the caller closes the answer's body.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return nil, errors.New("client: a request without a URL")
	}
	if req.URL.Host == "" {
		req = req.Clone(req.Context())
		req.URL = c.endpoint(req.URL.Path, req.URL.Query())
		req.Host = ""
	}
	resp, err := c.roundTrip(req)
	if err != nil {
		return nil, wrapf(req.Method+" "+req.URL.Path, err)
	}
	return resp, nil
}

// Close closes the client's idle connections. It does not close the SVID and
// bundle sources, which belong to the caller. It is safe to call more than
// once; a closed client can still be used and then opens new connections.
func (c *Client) Close() error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
	for _, tr := range c.retired {
		tr.CloseIdleConnections()
	}
	c.retired = nil
	return nil
}

// endpoint is the URL of path (an api.Path… constant) on the server.
func (c *Client) endpoint(path string, query url.Values) *url.URL {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = ""
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return &u
}

// transport returns the transport for the SVID the source holds now. When
// the leaf has changed since the last request, the connections made with the
// old leaf are retired: idle ones are closed and busy ones are never reused,
// so the next request makes a new TLS handshake with the new leaf.
func (c *Client) transport() (*http.Transport, error) {
	svid, err := c.svids.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("own X.509 SVID: %w", err)
	}
	if svid == nil || len(svid.Certificates) == 0 {
		return nil, errors.New("own X.509 SVID: the source holds no certificate")
	}
	leaf := svid.Certificates[0].Raw

	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.tr != nil && string(c.leaf) == string(leaf) {
		return c.tr, nil
	}
	// Connections handed back to retired transports after this point are
	// closed at the next rotation or Close, or after IdleConnTimeout.
	for _, tr := range c.retired {
		tr.CloseIdleConnections()
	}
	c.retired = c.retired[:0]
	if c.tr != nil {
		c.tr.CloseIdleConnections()
		c.retired = append(c.retired, c.tr)
		c.log.Debug("client.svid_rotated", "server", c.base.String())
	}
	c.tr = c.newTransport()
	c.leaf = leaf
	return c.tr, nil
}

func (c *Client) newTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       c.tlsConfig(),
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// tlsConfig is mTLS 1.3: the client certificate is taken from the source at
// every handshake; tetherd must present an SVID that chains to the bundle
// and has exactly the expected SPIFFE ID. The check runs in
// VerifyConnection, which (unlike VerifyPeerCertificate) also runs on
// resumed sessions.
func (c *Client) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: tlsconfig.GetClientCertificate(c.svids),
		// Not WebPKI: the server is verified as a SPIFFE ID in VerifyConnection.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   c.verifyServer,
	}
}

func (c *Client) verifyServer(cs tls.ConnectionState) error {
	raw := make([][]byte, 0, len(cs.PeerCertificates))
	for _, cert := range cs.PeerCertificates {
		raw = append(raw, cert.Raw)
	}
	id, _, err := x509svid.ParseAndVerify(raw, c.bundles)
	if err != nil {
		return &ServerError{Want: c.serverID, Err: err}
	}
	if id != c.serverID {
		return &ServerError{Want: c.serverID, Got: id}
	}
	return nil
}

// drain reads a little of body and closes it, so the connection can be
// reused.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 4<<10)
	_ = body.Close()
}

type contextKey int

const noLoginKey contextKey = iota

// withoutLogin marks ctx so that the round tripper never logs in for it.
func withoutLogin(ctx context.Context) context.Context {
	return context.WithValue(ctx, noLoginKey, true)
}

func (c *Client) mayLogin(ctx context.Context) bool {
	no, _ := ctx.Value(noLoginKey).(bool)
	return c.autoLogin && !no
}
