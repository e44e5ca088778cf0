package main

// The replica flags (--store, --etcd-*, --max-staleness): parsing from flags,
// TETHERD_ variables and the settings file, every usage error, the etcd
// client's mTLS, and /readyz while the sessions are not provably current.
// None of these tests needs etcd.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// identityArgs are the flags of a file identity and an admin, which check
// needs besides the store's.
func identityArgs(t *testing.T) []string {
	t.Helper()
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, "spiffe://example.org/tetherd"))
	return []string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle, "--admin", "spiffe://example.org/admin/*"}
}

// TestStoreSettings: the store flags from the command line, TETHERD_
// variables and the settings file, flag > variable > file > default, as
// check sees them.
func TestStoreSettings(t *testing.T) {
	id := identityArgs(t)
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	client := ca.WriteFiles(t, dir, "etcd-client", ca.Issue(t, "spiffe://example.org/etcd-client"))
	file := writeFile(t, "tetherd.hcl", `
store = "etcd"
etcd_endpoints = ["https://etcd-0.example.org:2379", "https://10.0.0.2:2379"]
etcd_prefix = "/file/"
etcd_ca = "`+client.Bundle+`"
etcd_cert = "`+client.Cert+`"
etcd_key = "`+client.Key+`"
max_staleness = "3s"
`)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want *storeConfig // nil: memory
		from map[string]string
	}{
		{name: "default-memory", from: map[string]string{"store": "", "etcd-prefix": "", "max-staleness": ""}},
		{name: "memory-given", args: []string{"--store", "memory"}, from: map[string]string{"store": fromFlag}},
		{
			name: "flags",
			args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:2379,https://h2:2379", "--etcd-endpoints", "https://[::1]:2379"},
			want: &storeConfig{endpoints: []string{"https://h1:2379", "https://h2:2379", "https://[::1]:2379"}, prefix: "/tether/", maxStaleness: time.Second},
			from: map[string]string{"store": fromFlag, "etcd-endpoints": fromFlag, "etcd-prefix": "", "max-staleness": ""},
		},
		{
			name: "env",
			env:  []string{"TETHERD_STORE=etcd", "TETHERD_ETCD_ENDPOINTS=https://h1:2379, https://h2:2379", "TETHERD_ETCD_PREFIX=/env/", "TETHERD_MAX_STALENESS=500ms"},
			want: &storeConfig{endpoints: []string{"https://h1:2379", "https://h2:2379"}, prefix: "/env/", maxStaleness: 500 * time.Millisecond},
			from: map[string]string{"store": fromEnv, "etcd-endpoints": fromEnv, "etcd-prefix": fromEnv, "max-staleness": fromEnv},
		},
		{
			name: "file",
			args: []string{"--config", file},
			want: &storeConfig{
				endpoints: []string{"https://etcd-0.example.org:2379", "https://10.0.0.2:2379"}, prefix: "/file/", maxStaleness: 3 * time.Second,
				certFile: client.Cert, keyFile: client.Key,
			},
			from: map[string]string{"store": fromFile, "etcd-endpoints": fromFile, "etcd-ca": fromFile, "etcd-cert": fromFile, "etcd-key": fromFile},
		},
		{
			name: "flag-beats-env-beats-file",
			args: []string{"--config", file, "--etcd-endpoints", "https://flag:2379"},
			env:  []string{"TETHERD_ETCD_ENDPOINTS=https://env:2379", "TETHERD_ETCD_PREFIX=/env/"},
			want: &storeConfig{
				endpoints: []string{"https://flag:2379"}, prefix: "/env/", maxStaleness: 3 * time.Second,
				certFile: client.Cert, keyFile: client.Key,
			},
			from: map[string]string{"etcd-endpoints": fromFlag, "etcd-prefix": fromEnv, "max-staleness": fromFile, "store": fromFile},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, o := settingsCmd(t, append(append([]string{}, id...), tc.args...)...)
			st, err := loadSettings(cmd.Flags(), tc.env)
			require.NoError(t, err)
			for flag, from := range tc.from {
				require.Equal(t, from, st.from[flag], "--%s comes from", flag)
			}
			cfg, err := o.check(cmd, false)
			require.NoError(t, err)
			if tc.want == nil {
				require.Nil(t, cfg.store)
				return
			}
			require.NotNil(t, cfg.store)
			got := *cfg.store
			require.Equal(t, tc.want.certFile != "", got.ca != nil, "--etcd-ca loaded")
			got.ca = nil
			require.Equal(t, *tc.want, got)
		})
	}
}

// TestStoreUsageErrors: every misuse of the store flags exits 2 with one
// line naming the flag, before anything is opened or served.
func TestStoreUsageErrors(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	id := identityArgs(t)
	ca := testpki.NewCA(t, "example.org")
	dir := t.TempDir()
	client := ca.WriteFiles(t, dir, "client", ca.Issue(t, "spiffe://example.org/etcd-client"))
	missing := filepath.Join(dir, "missing.pem")
	notPEM := writeFile(t, "not.pem", "not a certificate\n")
	etcd := []string{"--store", "etcd", "--etcd-endpoints", "https://h1:2379"}
	with := func(args ...string) []string { return append(append([]string{}, etcd...), args...) }

	for _, tc := range []struct {
		name string
		args []string
		env  []string
		file string // settings file content, if any
		want []string
	}{
		{name: "unknown-store", args: []string{"--store", "redis"}, want: []string{"--store:", `"redis" is not memory or etcd`}},
		{name: "unknown-store-env", env: []string{"TETHERD_STORE=Etcd"}, want: []string{"TETHERD_STORE:", `"Etcd"`}},
		{name: "etcd-without-endpoints", args: []string{"--store", "etcd"}, want: []string{"--etcd-endpoints:", "--store etcd needs"}},
		{name: "etcd-empty-endpoints", args: []string{"--store", "etcd", "--etcd-endpoints", ""}, want: []string{"--etcd-endpoints:"}},
		{name: "endpoint-http", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:2379,http://h2:2379"}, want: []string{"--etcd-endpoints:", `"http://h2:2379" is not https://host:port`, "https"}},
		{name: "endpoint-no-scheme", args: []string{"--store", "etcd", "--etcd-endpoints", "h1:2379"}, want: []string{"--etcd-endpoints:", `"h1:2379"`}},
		{name: "endpoint-no-port", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1"}, want: []string{"--etcd-endpoints:", "host and a port"}},
		{name: "endpoint-no-host", args: []string{"--store", "etcd", "--etcd-endpoints", "https://:2379"}, want: []string{"--etcd-endpoints:", "host and a port"}},
		{name: "endpoint-bad-port", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:99999"}, want: []string{"--etcd-endpoints:", "port"}},
		{name: "endpoint-named-port", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:etcd"}, want: []string{"--etcd-endpoints:", "port"}},
		{name: "endpoint-path", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:2379/v3"}, want: []string{"--etcd-endpoints:", "nothing after the port"}},
		{name: "endpoint-trailing-slash", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:2379/"}, want: []string{"--etcd-endpoints:", "nothing after the port"}},
		{name: "endpoint-user", args: []string{"--store", "etcd", "--etcd-endpoints", "https://root:pw@h1:2379"}, want: []string{"--etcd-endpoints:", "no user"}},
		{name: "endpoint-empty-entry", args: []string{"--store", "etcd", "--etcd-endpoints", "https://h1:2379,,https://h2:2379"}, want: []string{"--etcd-endpoints:", `""`}},
		{name: "endpoint-env", env: []string{"TETHERD_STORE=etcd", "TETHERD_ETCD_ENDPOINTS=unix:///run/etcd.sock"}, want: []string{"TETHERD_ETCD_ENDPOINTS:", "unix:///run/etcd.sock"}},
		{name: "prefix-no-leading-slash", args: with("--etcd-prefix", "tether/"), want: []string{"--etcd-prefix:", `"tether/" must begin and end with /`}},
		{name: "prefix-no-trailing-slash", args: with("--etcd-prefix", "/tether"), want: []string{"--etcd-prefix:", `"/tether"`}},
		{name: "prefix-empty", args: with("--etcd-prefix", ""), want: []string{"--etcd-prefix:"}},
		{name: "staleness-zero", args: with("--max-staleness", "0s"), want: []string{"--max-staleness: must be positive"}},
		{name: "staleness-negative", args: with("--max-staleness", "-1s"), want: []string{"--max-staleness: must be positive"}},
		{name: "staleness-not-duration", args: with("--max-staleness", "soon"), want: []string{"--max-staleness", `"soon"`}},
		{name: "cert-without-key", args: with("--etcd-cert", client.Cert), want: []string{"--etcd-cert and --etcd-key: give both"}},
		{name: "key-without-cert", args: with("--etcd-key", client.Key), want: []string{"--etcd-cert and --etcd-key: give both"}},
		{name: "cert-unreadable", args: with("--etcd-cert", missing, "--etcd-key", client.Key), want: []string{"--etcd-cert and --etcd-key:", missing}},
		{name: "key-unreadable", args: with("--etcd-cert", client.Cert, "--etcd-key", missing), want: []string{"--etcd-cert and --etcd-key:", missing}},
		{name: "cert-key-mismatch", args: with("--etcd-cert", client.Cert, "--etcd-key", testpki.NewCA(t, "example.org").WriteFiles(t, t.TempDir(), "o", ca.Issue(t, "spiffe://example.org/o")).Key), want: []string{"--etcd-cert and --etcd-key:"}},
		{name: "ca-unreadable", args: with("--etcd-ca", missing), want: []string{"--etcd-ca:", missing}},
		{name: "ca-not-pem", args: with("--etcd-ca", notPEM), want: []string{"--etcd-ca:", "holds no PEM certificate"}},
		{name: "endpoints-with-memory", args: []string{"--etcd-endpoints", "https://h1:2379"}, want: []string{"--etcd-endpoints: applies to --store etcd only"}},
		{name: "prefix-with-memory", args: []string{"--store", "memory", "--etcd-prefix", "/tether/"}, want: []string{"--etcd-prefix: applies to --store etcd only"}},
		{name: "ca-with-memory", args: []string{"--etcd-ca", client.Bundle}, want: []string{"--etcd-ca: applies to --store etcd only"}},
		{name: "cert-with-memory", args: []string{"--etcd-cert", client.Cert}, want: []string{"--etcd-cert: applies to --store etcd only"}},
		{name: "key-with-memory", args: []string{"--etcd-key", client.Key}, want: []string{"--etcd-key: applies to --store etcd only"}},
		{name: "staleness-with-memory", args: []string{"--max-staleness", "1s"}, want: []string{"--max-staleness: applies to --store etcd only"}},
		{name: "staleness-with-memory-env", env: []string{"TETHERD_MAX_STALENESS=2s"}, want: []string{"TETHERD_MAX_STALENESS: applies to --store etcd only"}},
		{name: "endpoints-with-memory-file", file: "etcd_endpoints = [\"https://h1:2379\"]\n", want: []string{"tetherd.hcl:1: etcd_endpoints: applies to --store etcd only"}},
		{name: "bad-endpoint-file", file: "store = \"etcd\"\netcd_endpoints = \"https://h1:2379,ftp://h2:21\"\n", want: []string{"tetherd.hcl:2: etcd_endpoints:", "ftp://h2:21"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			args := append(append([]string{}, id...), tc.args...)
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, "tetherd.hcl", tc.file))
			}
			requireUsage(t, args, tc.want...)
		})
	}
}

// requireUsage runs tetherd with args and requires exit 2 with one line
// saying each of want.
func requireUsage(t *testing.T, args []string, want ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	require.Equal(t, 2, code, "stderr: %s", stderr.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.Len(t, lines, 1, "one clear line: %q", stderr.String())
	require.True(t, strings.HasPrefix(lines[0], "tetherd: "), lines[0])
	for _, w := range want {
		require.Contains(t, lines[0], w)
	}
}

// TestStoreDev: dev mode keeps its memory store by default and refuses the
// etcd flags with it like serving does.
func TestStoreDev(t *testing.T) {
	o := &options{}
	root := &cobra.Command{Use: "tetherd"}
	o.register(root)
	dev := &cobra.Command{Use: "dev", RunE: func(*cobra.Command, []string) error { return nil }}
	root.AddCommand(dev)
	require.NoError(t, dev.ParseFlags(nil))
	cfg, err := o.check(dev, true)
	require.NoError(t, err)
	require.Nil(t, cfg.store)

	requireUsage(t, []string{"dev", "--dir", t.TempDir(), "--max-staleness", "2s"}, "--max-staleness: applies to --store etcd only")
	requireUsage(t, []string{"dev", "--dir", t.TempDir(), "--store", "etcd"}, "--etcd-endpoints:")
}

// TestStoreHelp: --help lists every store flag with its default.
func TestStoreHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"--help"}, &stdout, &stderr), stderr.String())
	help := stdout.String()
	for _, want := range []string{
		`--store string`, `(default "memory")`,
		`--etcd-endpoints strings`, `--etcd-prefix string`, `(default "/tether/")`,
		`--etcd-ca string`, `--etcd-cert string`, `--etcd-key string`,
		`--max-staleness duration`, `(default 1s)`,
	} {
		require.Contains(t, help, want)
	}
}

// TestStoreLogConfig: tetherd.config lists the store settings given, and
// where they came from, like every other.
func TestStoreLogConfig(t *testing.T) {
	cmd, _ := settingsCmd(t, "--store", "etcd")
	st, err := loadSettings(cmd.Flags(), []string{"TETHERD_ETCD_ENDPOINTS=https://h1:2379,https://h2:2379", "TETHERD_MAX_STALENESS=2s"})
	require.NoError(t, err)
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "json")
	require.NoError(t, err)
	logConfig(log, cmd.Flags(), st, false)
	out := buf.String()
	require.Contains(t, out, `"store":{"value":"etcd","from":"flag"}`)
	require.Contains(t, out, `"etcd_endpoints":{"value":["https://h1:2379","https://h2:2379"],"from":"env"}`)
	require.Contains(t, out, `"max_staleness":{"value":"2s","from":"env"}`)
	require.NotContains(t, out, "etcd_prefix", "a default is not logged")
}

// rotatingSource is an identity source whose SVID and bundle a test
// replaces, as the Workload API does.
type rotatingSource struct {
	mu     sync.Mutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s *rotatingSource) set(v *x509svid.SVID, b *x509bundle.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid, s.bundle = v, b
}

func (s *rotatingSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, nil
}

func (s *rotatingSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bundle == nil || s.bundle.TrustDomain() != td {
		return nil, errors.New("no bundle")
	}
	return s.bundle, nil
}

func (s *rotatingSource) Close() error { return nil }

var _ svid.Source = (*rotatingSource)(nil)

// bundleOf is the bundle of the CAs, all of td.
func bundleOf(td spiffeid.TrustDomain, cas ...*testpki.CA) *x509bundle.Bundle {
	var certs []*x509.Certificate
	for _, ca := range cas {
		certs = append(certs, ca.Cert)
	}
	return x509bundle.FromX509Authorities(td, certs)
}

// member is a TLS server standing in for an etcd member: it presents its
// certificate, requires a client certificate chaining to clientCAs, and
// reports the leaf each client presented.
type member struct {
	ln   net.Listener
	seen chan *x509.Certificate
	wg   sync.WaitGroup
}

func startMember(t *testing.T, cert *x509svid.SVID, clientCAs ...*testpki.CA) *member {
	t.Helper()
	pool := x509.NewCertPool()
	for _, ca := range clientCAs {
		pool.AddCert(ca.Cert)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{testpki.TLSCertificate(cert)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	require.NoError(t, err)
	m := &member{ln: ln, seen: make(chan *x509.Certificate, 16)}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.Handshake() == nil {
				m.seen <- tc.ConnectionState().PeerCertificates[0]
				_, _ = tc.Write([]byte("x")) // the client reads it once the handshake is done both ways
			}
			_ = tc.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		m.wg.Wait()
	})
	return m
}

// dial connects as the etcd client does: grpc sets the server name to the
// endpoint's host (an IP address is not sent in SNI).
func (m *member) dial(cfg *tls.Config, host string) (*x509.Certificate, error) {
	c := cfg.Clone()
	c.ServerName = host
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", m.ln.Addr().String(), c)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		return nil, err
	}
	return <-m.seen, nil
}

// TestEtcdTLS: tetherd presents its SVID as the identity source serves it
// now, or --etcd-cert as the file holds it now; a member must chain to the
// bundle of the own trust domain as it is now (or to --etcd-ca) and name the
// endpoint's host or, for IP endpoints, one of their addresses.
func TestEtcdTLS(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testpki.NewCA(t, "example.org")
	loopback := testpki.WithIPs(net.IPv4(127, 0, 0, 1))
	own := ca.Issue(t, "spiffe://example.org/tetherd")
	src := &rotatingSource{}
	src.set(own, bundleOf(td, ca))
	sc := &storeConfig{endpoints: []string{"https://127.0.0.1:2379", "https://etcd.example.org:2379"}, prefix: "/tether/", maxStaleness: time.Second}
	cfg := etcdTLS(sc, src, td, slog.New(slog.DiscardHandler))

	m := startMember(t, ca.Issue(t, "spiffe://example.org/etcd", loopback), ca)
	leaf, err := m.dial(cfg, "127.0.0.1")
	require.NoError(t, err)
	require.True(t, leaf.Equal(own.Certificates[0]), "the member sees tetherd's SVID")

	t.Run("svid-rotation-followed", func(t *testing.T) {
		next := ca.Issue(t, "spiffe://example.org/tetherd")
		src.set(next, bundleOf(td, ca))
		t.Cleanup(func() { src.set(own, bundleOf(td, ca)) })
		leaf, err := m.dial(cfg, "127.0.0.1")
		require.NoError(t, err)
		require.True(t, leaf.Equal(next.Certificates[0]))
	})

	t.Run("bundle-rotation-followed", func(t *testing.T) {
		ca2 := testpki.NewCA(t, "example.org")
		m2 := startMember(t, ca2.Issue(t, "spiffe://example.org/etcd", loopback), ca)
		_, err := m2.dial(cfg, "127.0.0.1")
		require.ErrorContains(t, err, "member certificate", "a CA not in the bundle yet")
		src.set(own, bundleOf(td, ca, ca2))
		t.Cleanup(func() { src.set(own, bundleOf(td, ca)) })
		_, err = m2.dial(cfg, "127.0.0.1")
		require.NoError(t, err, "the CA rotated in")
		src.set(own, bundleOf(td, ca))
		_, err = m.dial(cfg, "127.0.0.1")
		require.NoError(t, err)
	})

	t.Run("another-trust-domain-refused", func(t *testing.T) {
		other := testpki.NewCA(t, "other.org")
		mo := startMember(t, other.Issue(t, "spiffe://other.org/etcd", loopback), ca)
		var buf testutil.Buffer
		logged := etcdTLS(sc, src, td, slog.New(slog.NewJSONHandler(&buf, nil)))
		for range 3 {
			_, err := mo.dial(logged, "127.0.0.1")
			require.ErrorContains(t, err, "member certificate")
		}
		require.Equal(t, 1, strings.Count(buf.String(), `"msg":"store.member_refused"`), "said once: %s", buf.String())
		require.Contains(t, buf.String(), "unknown authority")
	})

	t.Run("ip-not-named-refused", func(t *testing.T) {
		mo := startMember(t, ca.Issue(t, "spiffe://example.org/etcd", testpki.WithIPs(net.IPv4(10, 0, 0, 9))), ca)
		_, err := mo.dial(cfg, "127.0.0.1")
		require.ErrorContains(t, err, "names none of the IP addresses")
		// An address of another endpoint than the one dialled is accepted
		// (the connection does not say which was dialled); one of none is not.
		only := etcdTLS(&storeConfig{endpoints: []string{"https://etcd.example.org:2379"}}, src, td, slog.New(slog.DiscardHandler))
		_, err = m.dial(only, "127.0.0.1")
		require.ErrorContains(t, err, "names none of the IP addresses")
	})

	t.Run("dns-name", func(t *testing.T) {
		md := startMember(t, ca.Issue(t, "spiffe://example.org/etcd", func(c *x509.Certificate) { c.DNSNames = []string{"etcd.example.org"} }), ca)
		_, err := md.dial(cfg, "etcd.example.org")
		require.NoError(t, err)
		_, err = md.dial(cfg, "etcd-1.example.org")
		require.ErrorContains(t, err, "etcd-1.example.org")
		_, err = m.dial(cfg, "etcd.example.org")
		require.ErrorContains(t, err, "etcd.example.org", "an IP SAN does not stand for a name")
	})

	t.Run("no-bundle", func(t *testing.T) {
		other := etcdTLS(sc, src, spiffeid.RequireTrustDomainFromString("other.org"), slog.New(slog.DiscardHandler))
		_, err := m.dial(other, "127.0.0.1")
		require.ErrorContains(t, err, "no trust bundle of other.org")
	})

	t.Run("files", func(t *testing.T) {
		etcdCA := testpki.NewCA(t, "etcd.internal")
		dir := t.TempDir()
		first := etcdCA.Issue(t, "spiffe://etcd.internal/tetherd")
		files := etcdCA.WriteFiles(t, dir, "client", first)
		fo := &storeFlags{kind: storeEtcd, endpoints: []string{"https://127.0.0.1:2379"}, prefix: "/tether/", maxStaleness: time.Second,
			ca: files.Bundle, cert: files.Cert, key: files.Key}
		fc, err := fo.check(settingsFlags(t), (*settings)(nil).name)
		require.NoError(t, err)
		fcfg := etcdTLS(fc, src, td, slog.New(slog.DiscardHandler))

		mf := startMember(t, etcdCA.Issue(t, "spiffe://etcd.internal/etcd", loopback), etcdCA)
		leaf, err := mf.dial(fcfg, "127.0.0.1")
		require.NoError(t, err)
		require.True(t, leaf.Equal(first.Certificates[0]), "the member sees --etcd-cert")

		_, err = m.dial(fcfg, "127.0.0.1")
		require.ErrorContains(t, err, "member certificate", "--etcd-ca replaces the bundle")

		second := etcdCA.Issue(t, "spiffe://etcd.internal/tetherd")
		etcdCA.WriteFiles(t, dir, "client", second)
		leaf, err = mf.dial(fcfg, "127.0.0.1")
		require.NoError(t, err)
		require.True(t, leaf.Equal(second.Certificates[0]), "a renewed --etcd-cert is presented")

		require.NoError(t, os.WriteFile(files.Key, []byte("half written"), 0o600))
		leaf, err = mf.dial(fcfg, "127.0.0.1")
		require.NoError(t, err)
		require.True(t, leaf.Equal(second.Certificates[0]), "an unreadable renewal keeps the last pair")
	})
}

// settingsFlags is the flag set of tetherd's serving flags, none given.
func settingsFlags(t *testing.T) *pflag.FlagSet {
	t.Helper()
	cmd, _ := settingsCmd(t)
	return cmd.Flags()
}

// fakeFresher is a session manager whose freshness a test sets.
type fakeFresher struct{ err atomic.Pointer[error] }

func (f *fakeFresher) Fresh() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *fakeFresher) set(err error) { f.err.Store(&err) }

// TestReadyzStale: /readyz is 503 while the sessions are not provably
// current, saying why in the store's own words, and 200 again once they
// are.
func TestReadyzStale(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	src := &svid.StaticSource{SVID: ca.Issue(t, "spiffe://example.org/tetherd")}
	var serving atomic.Bool
	serving.Store(true)
	sessions := &fakeFresher{}
	h := server.Health(readiness(&serving, src, sessions), nil)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, api.PathReadyz, nil))
		return rec.Code, rec.Body.String()
	}

	code, body := get()
	require.Equal(t, http.StatusOK, code, body)

	const detail = "this replica cannot prove its view of the sessions current (etcd unreachable or without quorum); retry"
	sessions.set(&session.Error{Code: api.CodeUnavailable, Reason: session.ReasonStale, Detail: detail, RetryAfter: time.Second})
	code, body = get()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: "+detail+"\n", body)

	sessions.set(errors.New("something else"))
	code, body = get()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: something else\n", body)

	sessions.set(nil)
	code, body = get()
	require.Equal(t, http.StatusOK, code, body)

	serving.Store(false)
	sessions.set(&session.Error{Code: api.CodeUnavailable, Reason: session.ReasonStale, Detail: detail})
	_, body = get()
	require.Contains(t, body, "the API listener is not serving", "the first reason is reported")
}

// TestStoreEtcdUnreachable: with --store etcd and no etcd to reach, tetherd
// starts and serves at once, but is not ready (503, in the store's words)
// and refuses a login with 503 unavailable and Retry-After; SIGTERM still
// stops it cleanly.
func TestStoreEtcdUnreachable(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, ftServerID))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "https://" + ln.Addr().String() // nothing listens there once closed
	require.NoError(t, ln.Close())

	p := ftStartEnv(t, opEnv(), "--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle,
		"--admin", "spiffe://example.org/admin/*", "--store", "etcd", "--etcd-endpoints", closed, "--max-staleness", "200ms")
	started := p.serving()
	store, _ := started["store"].(map[string]any)
	require.Equal(t, "etcd", store["kind"], "tetherd.started %v", started)
	require.Equal(t, []any{closed}, store["etcd_endpoints"])

	status, body := ftGet("http://" + p.health + api.PathHealthz)
	require.Equal(t, http.StatusOK, status, body)
	body = p.waitReady(http.StatusServiceUnavailable, 10*time.Second)
	require.True(t, strings.HasPrefix(body, "not ready: "), body)
	require.NotContains(t, body, "session: ", "the store's words, not the error's code and reason")
	require.Contains(t, body, "etcd")

	req, err := http.NewRequest(http.MethodPost, "https://"+p.api+api.PathSessions, nil)
	require.NoError(t, err)
	resp, err := p.apiClient(ca.Issue(t, ftAdminID)).Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(b))
	require.Contains(t, string(b), string(api.CodeUnavailable))
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	p.sigterm()
	stopped := p.Events("tetherd.stopped")
	require.Len(t, stopped, 1)
	require.Contains(t, stopped[0], "sessions_kept", "sessions live on in etcd: none is dropped")
	require.NotContains(t, stopped[0], "sessions_dropped")
}
