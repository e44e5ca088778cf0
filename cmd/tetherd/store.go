package main

// Replicas (CONTRACT.md, "Replicas"): --store memory|etcd, where etcd is
// any number of tetherd replicas sharing their sessions through an etcd
// cluster (package etcdstore), reached over mTLS.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/tetherproject/tether/etcdstore"
	"github.com/tetherproject/tether/internal/boundedfile"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// The stores --store names.
const (
	storeMemory = "memory"
	storeEtcd   = "etcd"
)

// etcdOnlyFlags apply to --store etcd only: given with --store memory, they
// are a usage error (the operator meant replicas and would not get them).
var etcdOnlyFlags = []string{"etcd-endpoints", "etcd-prefix", "etcd-ca", "etcd-cert", "etcd-key", "max-staleness"}

// storeFlags are the flags of the session store.
type storeFlags struct {
	kind          string
	endpoints     []string
	prefix        string
	ca, cert, key string
	maxStaleness  time.Duration
}

func (s *storeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&s.kind, "store", storeMemory, "where sessions live: memory (this process alone; a restart ends them all) or etcd (any number of replicas sharing them: --etcd-endpoints)")
	f.StringSliceVar(&s.endpoints, "etcd-endpoints", nil, "--store etcd: the etcd cluster's client URLs, https://host:port, comma-separated (each member's certificate must name its host or IP)")
	f.StringVar(&s.prefix, "etcd-prefix", etcdstore.DefaultPrefix, "--store etcd: the key prefix everything tetherd writes to etcd lies under, beginning and ending with /; replicas with the same SPIFFE ID and prefix are one issuer")
	f.StringVar(&s.ca, "etcd-ca", "", "--store etcd: CA certificates (PEM) the etcd members' certificates must chain to (default: the trust bundle of tetherd's own trust domain, as the identity source keeps it)")
	f.StringVar(&s.cert, "etcd-cert", "", "--store etcd: client certificate chain (PEM) for etcd, with --etcd-key; read again at each connection (default: tetherd's own SVID, following its rotation)")
	f.StringVar(&s.key, "etcd-key", "", "--store etcd: the PKCS#8, PKCS#1 or EC private key (PEM) of --etcd-cert")
	f.DurationVar(&s.maxStaleness, "max-staleness", etcdstore.DefaultMaxStaleness, "--store etcd: a replica that cannot prove its view of the sessions current within this refuses calls (503 unavailable) and is not ready")
}

// storeConfig is the checked form of the store flags for --store etcd.
type storeConfig struct {
	endpoints    []string
	prefix       string
	maxStaleness time.Duration
	// ca is the pool of --etcd-ca; nil: the bundle of the own trust domain.
	ca *x509.CertPool
	// certFile and keyFile are --etcd-cert and --etcd-key; "": the own SVID.
	certFile, keyFile string
}

// check validates the store flags: nil for --store memory. Every error is a
// usage error naming its setting as name does (options.name: the flag, the
// variable or the file's line and key). The files are read now, so that
// one that cannot be read stops tetherd before it serves.
func (s *storeFlags) check(f *pflag.FlagSet, name func(flag string) string) (*storeConfig, error) {
	switch s.kind {
	case storeMemory:
		for _, flag := range etcdOnlyFlags {
			if f.Changed(flag) {
				return nil, usagef("%s: applies to --store etcd only, and the store is memory: give --store etcd (with --etcd-endpoints) for replicas, or drop --%s", name(flag), flag)
			}
		}
		return nil, nil
	case storeEtcd:
	default:
		return nil, usagef("%s: %q is not memory or etcd", name("store"), s.kind)
	}
	if len(s.endpoints) == 0 {
		return nil, usagef("--etcd-endpoints: --store etcd needs the etcd cluster's client URLs (https://host:port, comma-separated)")
	}
	for _, e := range s.endpoints {
		if err := checkEndpoint(e); err != nil {
			return nil, usagef("%s: %q is not https://host:port: %v", name("etcd-endpoints"), e, err)
		}
	}
	if !strings.HasPrefix(s.prefix, "/") || !strings.HasSuffix(s.prefix, "/") {
		return nil, usagef("%s: %q must begin and end with / (as %s does)", name("etcd-prefix"), s.prefix, etcdstore.DefaultPrefix)
	}
	if s.maxStaleness <= 0 {
		return nil, usagef("%s: must be positive", name("max-staleness"))
	}
	c := &storeConfig{endpoints: s.endpoints, prefix: s.prefix, maxStaleness: s.maxStaleness}
	if (s.cert == "") != (s.key == "") {
		return nil, usagef("--etcd-cert and --etcd-key: give both to present a certificate of your own to etcd, or neither to present tetherd's SVID")
	}
	if s.cert != "" {
		if _, err := loadKeyPair(s.cert, s.key); err != nil {
			return nil, usagef("%s and %s: %v", name("etcd-cert"), name("etcd-key"), err)
		}
		c.certFile, c.keyFile = s.cert, s.key
	}
	if s.ca != "" {
		pem, err := boundedfile.Read(s.ca, boundedfile.MaxPEM)
		if err != nil {
			return nil, usagef("%s: %v", name("etcd-ca"), err)
		}
		c.ca = x509.NewCertPool()
		if !c.ca.AppendCertsFromPEM(pem) {
			return nil, usagef("%s: %s holds no PEM certificate", name("etcd-ca"), s.ca)
		}
	}
	return c, nil
}

// checkEndpoint says why e is not https://host:port, if it is not.
func checkEndpoint(e string) error {
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "https":
		return errors.New("the scheme must be https: tetherd reaches etcd over mTLS only")
	case u.User != nil:
		return errors.New("no user in the URL: tetherd authenticates with its certificate")
	case u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("nothing after the port")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return errors.New("a host and a port are required")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not 1 to 65535", port)
	}
	return nil
}

// attrs are what tetherd.started says of the store.
func (c *storeConfig) attrs() slog.Attr {
	if c == nil {
		return slog.Group("store", slog.String("kind", storeMemory))
	}
	return slog.Group("store", slog.String("kind", storeEtcd), slog.Any("etcd_endpoints", c.endpoints),
		slog.String("etcd_prefix", c.prefix), slog.Duration("max_staleness", c.maxStaleness))
}

// replicaStore is the etcd store and the signing key it announces, which
// the session manager signs with too.
type replicaStore struct {
	store *etcdstore.Store
	key   *session.Key
}

// openStore opens the etcd store of --store etcd (nil for memory), as the
// replica issuing as own's SPIFFE ID. It does not wait for etcd: until the
// store has proved its view current, the manager refuses with 503 and
// /readyz is 503. Close it after the manager.
func openStore(ctx context.Context, cfg *config, src svid.Source, own spiffeid.ID, reg prometheus.Registerer) (*replicaStore, error) {
	sc := cfg.store
	if sc == nil {
		return nil, nil
	}
	key, err := session.NewKey()
	if err != nil {
		return nil, err
	}
	maxTombs, maxTombsPerID := cfg.session.TombstoneCaps()
	store, err := etcdstore.Open(ctx, etcdstore.Config{
		Endpoints:                sc.endpoints,
		Prefix:                   sc.prefix,
		TLS:                      etcdTLS(sc, src, own.TrustDomain(), cfg.logger),
		Issuer:                   own,
		SVID:                     src.GetX509SVID,
		Bundles:                  src,
		Key:                      key,
		SessionTTL:               cfg.session.TTL,
		MaxStaleness:             sc.maxStaleness,
		MaxTombstones:            maxTombs,
		MaxTombstonesPerIdentity: maxTombsPerID,
		Logger:                   cfg.logger,
		Registerer:               reg,
	})
	if err != nil {
		return nil, fmt.Errorf("--store etcd: %w", err)
	}
	return &replicaStore{store: store, key: key}, nil
}

// etcdTLS is the mTLS configuration of the etcd client.
//
// tetherd presents --etcd-cert (read again at each connection, so that a
// renewed file is taken up), else its own SVID as the identity source
// serves it now, following its rotation.
//
// An etcd member's certificate must chain to --etcd-ca, else to the trust
// bundle of tetherd's own trust domain as the identity source serves it at
// that connection (so a CA that SPIRE rotates in is trusted and one rotated
// out is not), and name the member's host: the DNS name of its endpoint
// (as the TLS server name), or, for an endpoint given as an IP address
// (which TLS does not send, so that the connection does not say which one
// was dialled), one of the IP addresses of --etcd-endpoints. This is
// crypto/tls's own verification with roots read at each handshake, which a
// tls.Config cannot otherwise do.
func etcdTLS(sc *storeConfig, src svid.Source, td spiffeid.TrustDomain, log *slog.Logger) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The default verification would take fixed roots; VerifyConnection
		// does the same with roots of this handshake.
		InsecureSkipVerify: true, //nolint:gosec // G402: verifyMember verifies the chain and the host name, as crypto/tls would
	}
	if sc.certFile != "" {
		cfg.GetClientCertificate = fileClientCertificate(sc.certFile, sc.keyFile, log)
	} else {
		cfg.GetClientCertificate = tlsconfig.GetClientCertificate(src)
	}
	roots := func() (*x509.CertPool, error) { return sc.ca, nil }
	if sc.ca == nil {
		roots = func() (*x509.CertPool, error) {
			b, err := src.GetX509BundleForTrustDomain(td)
			if err != nil {
				return nil, fmt.Errorf("no trust bundle of %s to verify etcd with: %w", td, err)
			}
			pool := x509.NewCertPool()
			for _, ca := range b.X509Authorities() {
				pool.AddCert(ca)
			}
			return pool, nil
		}
	}
	ips := endpointIPs(sc.endpoints)
	var refusals repeatLimit
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		pool, err := roots()
		if err == nil {
			err = verifyMember(cs, pool, ips)
		}
		// The etcd client reports a refused member as a timeout at most:
		// say why here, once a minute per reason.
		if err != nil && refusals.first(err.Error(), time.Now()) {
			log.Warn("store.member_refused", slog.String("server_name", cs.ServerName), slog.String("error", err.Error()),
				slog.String("fix", "an etcd member's certificate must chain to --etcd-ca (default: tetherd's trust bundle) and name the host or IP address of its --etcd-endpoints entry"))
		}
		return err
	}
	return cfg
}

// repeatLimit lets the same message through once a minute.
type repeatLimit struct {
	mu   sync.Mutex
	last string
	at   time.Time
}

func (r *repeatLimit) first(msg string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg == r.last && now.Sub(r.at) < time.Minute {
		return false
	}
	r.last, r.at = msg, now
	return true
}

// verifyMember verifies an etcd member's certificate chain against roots
// and its host: cs.ServerName if the client sent one, else one of ips.
func verifyMember(cs tls.ConnectionState, roots *x509.CertPool, ips []string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("etcd: the member presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), DNSName: cs.ServerName}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("etcd: member certificate: %w", err)
	}
	if cs.ServerName != "" {
		return nil // Verify checked the name
	}
	for _, ip := range ips {
		if leaf.VerifyHostname(ip) == nil {
			return nil
		}
	}
	return fmt.Errorf("etcd: the member's certificate names none of the IP addresses of --etcd-endpoints (%s)", strings.Join(ips, ", "))
}

// endpointIPs are the hosts of endpoints that are IP addresses.
func endpointIPs(endpoints []string) []string {
	var ips []string
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			ips = append(ips, ip.String())
		}
	}
	return ips
}

// loadKeyPair is tls.LoadX509KeyPair with bounded reads.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := boundedfile.Read(certFile, boundedfile.MaxPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := boundedfile.Read(keyFile, boundedfile.MaxPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}

// fileClientCertificate reads the certificate and key files at each
// connection to etcd; when they cannot be read (a renewal caught halfway),
// the last pair read is presented again, and the failure logged.
func fileClientCertificate(certFile, keyFile string, log *slog.Logger) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	var mu sync.Mutex
	var last *tls.Certificate
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := loadKeyPair(certFile, keyFile)
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			last = &cert
			return last, nil
		}
		if last == nil {
			return nil, fmt.Errorf("--etcd-cert: %w", err)
		}
		log.Warn("store.client_cert_reload_failed", slog.String("error", err.Error()), slog.String("kept", "the last certificate read"))
		return last, nil
	}
}
