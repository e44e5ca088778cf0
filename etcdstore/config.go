package etcdstore

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/session"
)

// Defaults of Config.
const (
	DefaultPrefix       = "/tether/"
	DefaultMaxStaleness = time.Second
)

// Config configures a Store.
type Config struct {
	// Endpoints are the etcd cluster's client URLs (https://host:port).
	Endpoints []string
	// Prefix is where everything this replica writes lies; replicas with
	// the same Issuer and Prefix are one issuer. Default DefaultPrefix.
	Prefix string
	// TLS is the client's mTLS configuration for etcd. Required.
	TLS *tls.Config
	// Issuer is tetherd's SPIFFE ID: a key announcement counts only if it
	// is signed by an X.509 SVID of this ID that chains to Bundles.
	Issuer spiffeid.ID
	// SVID returns the replica's current X.509 SVID (of Issuer), which
	// signs its key announcement.
	SVID func() (*x509svid.SVID, error)
	// Bundles verifies other replicas' announcements.
	Bundles x509bundle.Source
	// Key is the replica's signing key (the one its Manager mints tokens
	// with): only its public half is written, and it signs every record
	// this replica writes.
	Key *session.Key
	// SessionTTL is the longest a session lives (tetherd's --ttl): a key
	// announcement outlives its replica by this much, so the sessions the
	// key signed stay verifiable to replicas that start later.
	SessionTTL time.Duration
	// MaxStaleness: a replica that cannot prove its view current within
	// this refuses (session.Store.Fresh). Default DefaultMaxStaleness.
	MaxStaleness time.Duration
	// MaxTombstones and MaxTombstonesPerIdentity cap the local view's
	// tombstones, as session.Config's do.
	MaxTombstones, MaxTombstonesPerIdentity int
	// Logger receives the store's events (connection, staleness, refused
	// records); default silent.
	Logger *slog.Logger
	// Registerer, if set, receives the store's metrics.
	Registerer prometheus.Registerer
}
