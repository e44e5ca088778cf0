// Command probe is the integration suite's stand-in for an admin's (or
// another workload's) client. The suite runs it as another Linux user with
// runuser, so that the SPIRE agent attests it by uid. It fetches that user's
// X509-SVID from the Workload API, prints one JSON line when it holds one,
// then reads probe.Command lines on standard input and answers each with one
// probe.Result line on standard output, until end of input.
//
// Every request goes over a new TLS connection (no keep-alive, no session
// resumption), presenting either the current SVID or a pinned one, and
// authorizes the server by its SPIFFE ID. Tokens stay inside the probe (in
// named slots, or in 0600 files on command) and are never printed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/tetherproject/tether/integration/internal/probe"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		addr         = flag.String("workload-api", "", "Workload API address (unix:///path)")
		server       = flag.String("server", "", "tetherd API URL (https://127.0.0.1:PORT)")
		serverID     = flag.String("server-id", "", "tetherd's SPIFFE ID")
		fetchTimeout = flag.Duration("fetch-timeout", 30*time.Second, "how long to wait for the first SVID")
	)
	flag.Parse()
	out := json.NewEncoder(os.Stdout)
	fail := func(format string, args ...any) int {
		_ = out.Encode(probe.Result{Op: "ready", Error: fmt.Sprintf(format, args...)})
		return 1
	}
	sid, err := spiffeid.FromString(*serverID)
	if err != nil {
		return fail("-server-id: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *fetchTimeout)
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(*addr)))
	cancel()
	if err != nil {
		// SPIRE retries PermissionDenied silently, so a missing entry looks
		// like a timeout: say so.
		return fail("no X509-SVID from %s within %s for uid %d (is there a registration entry with selector unix:uid:%d?): %v",
			*addr, *fetchTimeout, os.Getuid(), os.Getuid(), err)
	}
	defer func() { _ = src.Close() }()

	p := &prober{
		src:      src,
		server:   strings.TrimSuffix(*server, "/"),
		serverID: sid,
		pinned:   map[string]*x509svid.SVID{},
		tokens:   map[string]string{},
	}
	cur, err := src.GetX509SVID()
	if err != nil {
		return fail("%v", err)
	}
	if err := out.Encode(probe.Result{Op: "ready", SVID: leafOf(cur.Certificates[0])}); err != nil {
		return 1
	}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for in.Scan() {
		var c probe.Command
		var r probe.Result
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			r = probe.Result{Error: fmt.Sprintf("bad command: %v", err)}
		} else {
			r = p.do(c)
		}
		r.Seq, r.Op = c.Seq, c.Op
		if err := out.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			return 1
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	return 0
}

type prober struct {
	src      *workloadapi.X509Source
	server   string
	serverID spiffeid.ID
	pinned   map[string]*x509svid.SVID
	tokens   map[string]string
}

func (p *prober) do(c probe.Command) probe.Result {
	switch c.Op {
	case probe.OpSVID:
		cur, err := p.src.GetX509SVID()
		if err != nil {
			return probe.Result{Error: err.Error()}
		}
		return probe.Result{SVID: leafOf(cur.Certificates[0])}
	case probe.OpWaitSVID:
		return p.waitSVID(c)
	case probe.OpPin:
		if c.Slot == "" {
			return probe.Result{Error: "pin: no slot"}
		}
		cur, err := p.src.GetX509SVID()
		if err != nil {
			return probe.Result{Error: err.Error()}
		}
		p.pinned[c.Slot] = cur
		return probe.Result{SVID: leafOf(cur.Certificates[0])}
	case probe.OpSaveToken:
		tok, ok := p.tokens[c.Slot]
		if !ok {
			return probe.Result{Error: fmt.Sprintf("save_token: no token in slot %q", c.Slot)}
		}
		if err := os.WriteFile(c.File, []byte(tok), 0o600); err != nil {
			return probe.Result{Error: err.Error()}
		}
		return probe.Result{}
	case probe.OpLoadToken:
		b, err := os.ReadFile(c.File)
		if err != nil {
			return probe.Result{Error: err.Error()}
		}
		p.tokens[c.Slot] = strings.TrimSpace(string(b))
		return probe.Result{}
	case probe.OpRequest:
		return p.request(c)
	default:
		return probe.Result{Error: fmt.Sprintf("unknown op %q", c.Op)}
	}
}

func (p *prober) waitSVID(c probe.Command) probe.Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last *x509.Certificate
	for {
		cur, err := p.src.GetX509SVID()
		if err != nil {
			return probe.Result{Error: err.Error()}
		}
		last = cur.Certificates[0]
		left := time.Until(last.NotAfter)
		if (c.NotFingerprint == "" || svid.Fingerprint(last) != c.NotFingerprint) &&
			(c.MinTTL == 0 || left >= c.MinTTL) &&
			(c.MaxTTL == 0 || left <= c.MaxTTL) {
			return probe.Result{SVID: leafOf(last)}
		}
		select {
		case <-p.src.Updated():
		case <-deadline.C:
			return probe.Result{
				SVID:  leafOf(last),
				Error: fmt.Sprintf("wait_svid: no matching SVID within %s", timeout),
			}
		}
	}
}

// usedSource hands the TLS stack an SVID and remembers which one it was, so
// the result names the leaf really presented even if the Workload API rotated
// it in between.
type usedSource struct {
	src  x509svid.Source
	mu   sync.Mutex
	used *x509svid.SVID
}

func (u *usedSource) GetX509SVID() (*x509svid.SVID, error) {
	s, err := u.src.GetX509SVID()
	if err == nil {
		u.mu.Lock()
		u.used = s
		u.mu.Unlock()
	}
	return s, err
}

func (p *prober) request(c probe.Command) probe.Result {
	var r probe.Result
	var src x509svid.Source = p.src
	if c.Leaf != "" {
		s, ok := p.pinned[c.Leaf]
		if !ok {
			return probe.Result{Error: fmt.Sprintf("request: no pinned SVID %q", c.Leaf)}
		}
		src = s
	}
	used := &usedSource{src: src}
	tlsConf := tlsconfig.MTLSClientConfig(used, p.src, tlsconfig.AuthorizeID(p.serverID))
	tlsConf.MinVersion = tls.VersionTLS13
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   tlsConf,
			DisableKeepAlives: true, // a new connection, and handshake, per request
		},
	}
	defer client.CloseIdleConnections()

	var body io.Reader
	if len(c.Body) > 0 {
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequest(c.Method, p.server+c.Path, body)
	if err != nil {
		return probe.Result{Error: err.Error()}
	}
	if len(c.Body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		tok, ok := p.tokens[c.Token]
		if !ok {
			return probe.Result{Error: fmt.Sprintf("request: no token in slot %q", c.Token)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	used.mu.Lock()
	if used.used != nil {
		r.Client = leafOf(used.used.Certificates[0])
	}
	used.mu.Unlock()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		r.Server = leafOf(resp.TLS.PeerCertificates[0])
	}
	r.Status = resp.StatusCode
	r.WWWAuthenticate = resp.Header.Get("WWW-Authenticate")
	r.Allow = resp.Header.Get("Allow")
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if resp.StatusCode >= 300 {
		var e api.ErrorResponse
		if err := json.Unmarshal(b, &e); err != nil || e.Error == nil {
			r.Error = fmt.Sprintf("error answer is not {\"error\":{…}}: %.200q", b)
			return r
		}
		r.Code, r.Message = e.Error.Code, e.Error.Message
		return r
	}
	if len(b) == 0 {
		return r
	}
	var ok struct {
		Token    string        `json:"token"`
		Session  *api.Session  `json:"session"`
		Sessions []api.Session `json:"sessions"`
		Revoked  *int          `json:"revoked"`
	}
	if err := json.Unmarshal(b, &ok); err != nil {
		r.Error = fmt.Sprintf("answer is not JSON: %v", err)
		return r
	}
	r.Session, r.Sessions, r.Revoked = ok.Session, ok.Sessions, ok.Revoked
	if ok.Token != "" {
		r.GotToken = true
		claims, err := decodeClaims(ok.Token)
		if err != nil {
			r.Error = "token: " + err.Error()
		}
		r.TokenClaims = claims
		if c.SaveToken != "" {
			p.tokens[c.SaveToken] = ok.Token
		}
	}
	return r
}

// decodeClaims reads a compact JWS's payload without verifying it.
func decodeClaims(tok string) (*probe.Claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS (three dot-separated parts)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	var c probe.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return &c, nil
}

func leafOf(cert *x509.Certificate) *probe.Leaf {
	l := &probe.Leaf{
		Fingerprint: svid.Fingerprint(cert),
		Serial:      cert.SerialNumber.String(),
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
	}
	if id, err := x509svid.IDFromCert(cert); err == nil {
		l.SPIFFEID = id.String()
	}
	return l
}
