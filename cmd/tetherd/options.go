package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/time/rate"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/logthrottle"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
)

// options are tetherd's flags (CONTRACT.md), plus timeouts and connection
// limits of our own.
type options struct {
	configFile                  string
	spiffeID                    string
	listen, healthListen        string
	workloadAPI                 string
	svidCert, svidKey, bundle   string
	admins, introspectors       []string
	sessionTTL, idleTimeout     time.Duration
	maxSessions, maxPerIdentity int
	loginRate                   float64
	loginBurst                  int
	logLevel, logFormat         string
	startupTimeout              time.Duration
	shutdownTimeout             time.Duration
	conns                       server.ConnLimits
	roles                       roleFlags
	store                       storeFlags

	// settings says where each setting came from once loadSettings ran
	// (nil when it did not: dev mode takes its command line only).
	settings *settings
}

// registerServe registers the flags of serving with an identity of one's
// own, which dev mode (a throwaway identity, command line only) does not
// take: --config and --spiffe-id.
func (o *options) registerServe(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "HCL file of settings: keys are the flags' names with _ (max_sessions = 100, admin = [\"spiffe://...\"]); precedence: flag > "+envPrefix+"<FLAG> > file > default (env "+envConfig+")")
	f.StringVar(&o.spiffeID, "spiffe-id", "", "the SPIFFE ID tetherd serves as, picked among several SVIDs, and never another: while no SVID has it, tetherd is not ready (default: the ID of the first SVID)")
}

func (o *options) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "the API: HTTPS, TLS 1.3 only, client X.509 SVID required")
	f.StringVar(&o.healthListen, "health-listen", "127.0.0.1:8080", "plain HTTP: /healthz, /readyz, /metrics")
	f.StringVar(&o.workloadAPI, "workload-api", os.Getenv(workloadapi.SocketEnv), "SPIFFE Workload API address (unix:///path or tcp://ip:port); default $SPIFFE_ENDPOINT_SOCKET")
	f.StringVar(&o.svidCert, "svid-cert", "", "identity from files: SVID certificate chain (PEM), leaf first")
	f.StringVar(&o.svidKey, "svid-key", "", "identity from files: the SVID's PKCS#8 private key (PEM)")
	f.StringVar(&o.bundle, "bundle", "", "identity from files: the trust domain's CA certificates (PEM)")
	f.StringArrayVar(&o.admins, "admin", nil, "who may log in: spiffe://td/path (exactly) or spiffe://td/path/* (any ID below); repeatable, required")
	f.StringArrayVar(&o.introspectors, "introspector", nil, "who may call /v1/introspect (same pattern syntax); repeatable; default nobody")
	f.DurationVar(&o.sessionTTL, "session-ttl", session.DefaultTTL, "absolute session lifetime")
	f.DurationVar(&o.idleTimeout, "idle-timeout", session.DefaultIdleTimeout, "a session not used for this long ends; at most --session-ttl (a shorter --session-ttl lowers the default)")
	f.IntVar(&o.maxSessions, "max-sessions", session.DefaultMaxSessions, "live sessions in all; more are refused (429)")
	f.IntVar(&o.maxPerIdentity, "max-sessions-per-identity", session.DefaultMaxSessionsPerIdentity, "live sessions of one SPIFFE ID; more are refused (429)")
	f.Float64Var(&o.loginRate, "login-rate", float64(session.DefaultLoginRate), "logins per second per SPIFFE ID (0 turns the limit off)")
	f.IntVar(&o.loginBurst, "login-burst", session.DefaultLoginBurst, "login burst per SPIFFE ID")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "json", "json, or text for people")
	f.DurationVar(&o.startupTimeout, "startup-timeout", 30*time.Second, "how long to wait for a first SVID from the Workload API")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	f.IntVar(&o.conns.MaxConnections, "max-connections", server.DefaultMaxConnections, "open API connections in all; more are closed at once")
	f.IntVar(&o.conns.MaxPerIdentity, "max-connections-per-identity", server.DefaultMaxPerIdentity, "open API connections of one SPIFFE ID; more are closed after the handshake")
	f.IntVar(&o.conns.MaxHandshakes, "max-handshakes", server.DefaultMaxHandshakes, "API connections in their TLS handshake at once; a new one pushes out the oldest")
	f.DurationVar(&o.conns.HandshakeTimeout, "handshake-timeout", server.DefaultHandshakeTimeout, "how long a TLS handshake on the API may take")
	f.DurationVar(&o.conns.MaxAge, "max-connection-age", server.DefaultMaxAge, "an API connection older than this is closed after its next answer")
	o.roles.register(f)
	o.store.register(f)
}

// config is the checked form of the options.
type config struct {
	admins, introspectors auth.Policy
	spiffeID              spiffeid.ID // zero: pin the first SVID's ID
	files                 bool
	workloadAPI           string
	logger                *slog.Logger
	session               session.Config
	roles                 []roleSpec   // session.Roles, with the patterns they came from
	store                 *storeConfig // --store etcd; nil for memory
	// name is how an error names a setting, by its flag's name: where its
	// value came from (options.name).
	name func(flag string) string
}

// name is how an error names the setting of flag: where its value came
// from (settings.name), or $SPIFFE_ENDPOINT_SOCKET for a --workload-api
// given nowhere, whose default that variable is.
func (o *options) name(fs *pflag.FlagSet, flag string) string {
	if flag == "workload-api" && !fs.Changed(flag) && o.workloadAPI != "" {
		return workloadapi.SocketEnv
	}
	return o.settings.name(flag)
}

// check validates the options; every error is a usage error (exit 2)
// naming the setting at fault where its value came from (options.name):
// its flag, its variable, or the settings file's line and key. dev relaxes
// the identity and --admin requirements.
func (o *options) check(cmd *cobra.Command, dev bool) (*config, error) {
	f := cmd.Flags()
	name := func(flag string) string { return o.name(f, flag) }
	c := &config{name: name}
	var err error
	if len(o.admins) == 0 && !dev {
		return nil, usagef("--admin: at least one admin pattern is required (no one is an admin by default)")
	}
	if c.admins, err = auth.ParsePolicy(o.admins); err != nil {
		return nil, usagef("%s: %v", name("admin"), strings.TrimPrefix(err.Error(), "auth: "))
	}
	if c.introspectors, err = auth.ParsePolicy(o.introspectors); err != nil {
		return nil, usagef("%s: %v", name("introspector"), strings.TrimPrefix(err.Error(), "auth: "))
	}
	if o.spiffeID != "" {
		if c.spiffeID, err = spiffeid.FromString(o.spiffeID); err != nil {
			return nil, usagef("%s: %q is not a SPIFFE ID: %v", name("spiffe-id"), o.spiffeID, err)
		}
	}
	anyFile := o.svidCert != "" || o.svidKey != "" || o.bundle != ""
	if dev {
		if anyFile || f.Changed("workload-api") {
			return nil, usagef("dev: --workload-api, --svid-cert, --svid-key and --bundle do not apply: dev mode makes its own identity")
		}
	} else {
		if anyFile && (o.svidCert == "" || o.svidKey == "" || o.bundle == "") {
			return nil, usagef("--svid-cert, --svid-key and --bundle: give all three to take the identity from files")
		}
		switch {
		case anyFile && f.Changed("workload-api"):
			return nil, usagef("%s and %s: choose exactly one identity source", name("workload-api"), name("svid-cert"))
		case anyFile:
			c.files = true
		case o.workloadAPI != "":
			if err := checkWorkloadAPI(o.workloadAPI); err != nil {
				return nil, usagef("%s: %q is not unix:///path or tcp://ip:port: %v", name("workload-api"), o.workloadAPI, err)
			}
			c.workloadAPI = o.workloadAPI
		default:
			return nil, usagef("--workload-api: no identity source: give --workload-api (or set SPIFFE_ENDPOINT_SOCKET), or --svid-cert, --svid-key and --bundle")
		}
	}
	for _, a := range []struct{ flag, addr string }{{"listen", o.listen}, {"health-listen", o.healthListen}} {
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return nil, usagef("%s: %v", name(a.flag), err)
		}
		if dev && !isLoopback(host) {
			return nil, usagef("%s: dev mode serves on loopback only, not %q", name(a.flag), host)
		}
	}
	positive := []struct {
		flag string
		ok   bool
	}{
		{"session-ttl", o.sessionTTL > 0},
		{"idle-timeout", o.idleTimeout > 0},
		{"max-sessions", o.maxSessions > 0},
		{"max-sessions-per-identity", o.maxPerIdentity > 0},
		{"login-rate", o.loginRate >= 0 && !math.IsInf(o.loginRate, 0) && !math.IsNaN(o.loginRate)},
		{"login-burst", o.loginBurst > 0},
		{"startup-timeout", o.startupTimeout > 0},
		{"shutdown-timeout", o.shutdownTimeout > 0},
		{"max-connections", o.conns.MaxConnections > 0},
		{"max-connections-per-identity", o.conns.MaxPerIdentity > 0},
		{"max-handshakes", o.conns.MaxHandshakes > 0},
		{"handshake-timeout", o.conns.HandshakeTimeout > 0},
		{"max-connection-age", o.conns.MaxAge > 0},
	}
	for _, p := range positive {
		if !p.ok {
			return nil, usagef("%s: must be positive", name(p.flag))
		}
	}
	idle := o.idleTimeout
	if idle > o.sessionTTL {
		if f.Changed("idle-timeout") {
			return nil, usagef("%s: %s is longer than --session-ttl %s: a session cannot sit idle longer than it lives; give at most %s", name("idle-timeout"), idle, o.sessionTTL, o.sessionTTL)
		}
		// Not given: the default follows a shorter TTL (as --help says), so
		// that tetherd.started shows the idle timeout that applies.
		idle = o.sessionTTL
	}
	// Roles' default approvers, and the admins their patterns must reach,
	// include dev mode's admin pattern, which serve adds to the policy.
	admins := c.admins
	if dev {
		devAdmins, _ := auth.ParsePolicy([]string{devAdminPattern})
		admins = append(slices.Clone(admins), devAdmins...)
	}
	if c.roles, err = o.roles.build(admins, o.sessionTTL, name); err != nil {
		return nil, err
	}
	if c.store, err = o.store.check(f, name); err != nil {
		return nil, err
	}
	if _, err := logLevel(o.logLevel); err != nil {
		return nil, usagef("%s: %v", name("log-level"), err)
	}
	if err := checkLogFormat(o.logFormat); err != nil {
		return nil, usagef("%s: %v", name("log-format"), err)
	}
	if c.logger, err = newLogger(cmd.ErrOrStderr(), o.logLevel, o.logFormat); err != nil {
		return nil, err
	}
	lr := rate.Limit(o.loginRate)
	if o.loginRate == 0 {
		lr = rate.Inf
	}
	c.session = session.Config{
		TTL: o.sessionTTL, IdleTimeout: idle,
		MaxSessions: o.maxSessions, MaxSessionsPerIdentity: o.maxPerIdentity,
		LoginRate: lr, LoginBurst: o.loginBurst,
		Logger: c.logger,
		Roles:  sessionRoles(c.roles),
	}
	return c, nil
}

// checkWorkloadAPI says why addr is not a Workload API address, if it is
// not: go-spiffe's own check (what its client refuses at the dial), and a
// unix URI with a host (unix://host/path), which that check lets through and
// gRPC then refuses at the dial.
func checkWorkloadAPI(addr string) error {
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return err
	}
	if u, err := url.Parse(addr); err == nil && u.Scheme == "unix" && u.Host != "" {
		return fmt.Errorf("%q would be the socket URI's host: write the absolute path after unix:// (three slashes)", u.Host)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logThrottle is the throttle newLogger puts on refusal log lines; the zero
// value is internal/logthrottle's defaults. Tests set a manual clock here.
var logThrottle logthrottle.Config

// newLogger returns tetherd's logger. Refusal events (session.rejected,
// login.denied, ...) go through logthrottle: metrics still count every one,
// but their lines are bounded per message, reason and peer, with a
// log.suppressed summary, so a client cannot choose the log volume.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lv, err := logLevel(level)
	if err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	if err := checkLogFormat(format); err != nil {
		return nil, usagef("--log-format: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationsAsStrings}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(logthrottle.New(h, logThrottle)), nil
}

// logLevel is the level --log-level names.
func logLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", level)
	}
	return lv, nil
}

// checkLogFormat says why format is not one --log-format takes, if it is not.
func checkLogFormat(format string) error {
	if format != "json" && format != "text" {
		return fmt.Errorf("%q is not json or text", format)
	}
	return nil
}

// durationsAsStrings writes a duration as Go writes it ("8h0m0s"), as the
// flags take it, in both formats: the JSON handler would write nanoseconds.
func durationsAsStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
