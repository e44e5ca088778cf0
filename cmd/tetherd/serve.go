package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/internal/logthrottle"
	"github.com/tetherproject/tether/server"
	"github.com/tetherproject/tether/session"
	"github.com/tetherproject/tether/svid"
)

// devSetup is what dev mode hands serve: its identity, its extra policy, and
// what to print once the listener is bound.
type devSetup struct {
	source        svid.Source
	admins        auth.Policy
	introspectors auth.Policy
	announce      func(w io.Writer, apiAddr string)
}

// serve runs tetherd until SIGTERM or SIGINT, in the steps below. What a step
// opens is closed, in the reverse order, on the way out.
func serve(cmd *cobra.Command, o *options, dev *devSetup) error {
	cfg, err := o.check(cmd, dev != nil)
	if err != nil {
		return err
	}
	// tetherd.config is the first line of the log once the settings are
	// known good: after SVID files have loaded (one that does not is a
	// usage error, a single line), before any wait for the Workload API.
	logSettings := func() {
		logConfig(cfg.logger, cmd.Flags(), o.settings, dev == nil && !cmd.Flags().Changed("workload-api") && cfg.workloadAPI != "")
	}
	if !cfg.files {
		logSettings()
	}
	cfg.addDev(dev)
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	m := newMetrics()
	idLog := newIdentityLog(cfg.logger)
	id, err := openIdentity(ctx, o, cfg, dev, m.reloadFailures, idLog)
	if err != nil {
		return err
	}
	defer func() { _ = id.src.Close() }() // nothing to do about a failed close at exit
	if cfg.files {
		logSettings()
	}
	m.reg.MustRegister(svidExpiry(id.src))
	stopWatch := idLog.watchExpiry(id.src)
	defer stopWatch()
	// The store outlives the manager (closed after it) and the signal: it
	// serves the drain, and its Close writes the last uses to etcd.
	store, err := openStore(context.WithoutCancel(ctx), cfg, id.src, id.own.ID, m.reg)
	if err != nil {
		return err
	}
	if store != nil {
		defer func() { _ = store.store.Close() }() // nothing to do about a failed close at exit
	}
	mgr, err := newSessions(cfg, id.own.ID, m.reg, store)
	if err != nil {
		return err
	}
	defer func() { _ = mgr.Close() }()
	apiLn, healthLn, err := listen(o)
	if err != nil {
		return err
	}
	srv := startServers(o, cfg, m, id.src, mgr, apiLn, healthLn)
	logStarted(cfg.logger, o, cfg, id.own.ID, apiLn.Addr(), healthLn.Addr())
	if dev != nil {
		dev.announce(cmd.OutOrStdout(), apiLn.Addr().String())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	runErr := waitForStop(ctx, cfg.logger, id.files, hup, srv.stopped)
	return drain(cfg.logger, o.shutdownTimeout, srv, mgr, store != nil, runErr)
}

// addDev adds dev mode's admin and introspector patterns to the policies.
func (c *config) addDev(dev *devSetup) {
	if dev != nil {
		c.admins = append(c.admins, dev.admins...)
		c.introspectors = append(c.introspectors, dev.introspectors...)
	}
}

// metrics is tetherd's Prometheus registry (served on /metrics) and the
// counters serve keeps itself; the packages register their own (the server
// package its tether_http_* metrics).
type metrics struct {
	reg            *prometheus.Registry
	reloadFailures prometheus.Counter
	healthShed     prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_identity_reload_failures_total",
			Help: "Changed SVID files that could not be loaded (the last good identity was kept).",
		}),
		healthShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_health_connections_refused_total",
			Help: "Connections to --health-listen closed at once because the listener's connection cap was reached.",
		}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tether_build_info",
		Help:        "Always 1; its labels are the version tetherd was built as (what tetherd version prints) and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": cli.Version(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.reloadFailures, m.healthShed, buildInfo)
	return m
}

// svidExpiry is the gauge of the served SVID's NotAfter, read at each
// scrape: alert on it approaching (time() > this - margin) to hear of an
// agent that stopped renewing before clients do.
func svidExpiry(src x509svid.Source) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tether_svid_expiry_timestamp_seconds",
		Help: "When the SVID tetherd serves expires (its NotAfter), in seconds since the Unix epoch; 0 while it has none.",
	}, func() float64 {
		s, err := src.GetX509SVID()
		if err != nil || s == nil || len(s.Certificates) == 0 {
			return 0
		}
		return float64(s.Certificates[0].NotAfter.Unix())
	})
}

// identity is tetherd's own: the source of its SVID and trust bundles, and
// the SVID it starts with.
type identity struct {
	src   svid.Source
	files *svid.FileSource // the source when it is files: SIGHUP reloads them
	own   *x509svid.SVID
}

// openIdentity takes the identity from dev mode, from files or from the
// Workload API, pinned to --spiffe-id (else to the ID it starts with), and
// checks that its SVID is usable now. What happens to the identity later
// goes to idLog.
func openIdentity(ctx context.Context, o *options, cfg *config, dev *devSetup, reloadFailures prometheus.Counter, idLog *identityLog) (*identity, error) {
	id := &identity{}
	var err error
	switch {
	case dev != nil:
		id.src = dev.source
	case cfg.files:
		if id.files, err = watchFiles(o, cfg, reloadFailures, idLog); err != nil {
			return nil, err
		}
		id.src = id.files
	default:
		cfg.logger.Info("identity.waiting", slog.String("workload_api", cfg.workloadAPI), slog.Duration("timeout", o.startupTimeout))
		src, err := svid.OpenWorkload(ctx, svid.WorkloadConfig{
			Addr: cfg.workloadAPI, Timeout: o.startupTimeout, ID: cfg.spiffeID, Logger: cfg.logger,
			OnUpdate: func(served *x509svid.SVID, pin svid.PinState) { idLog.update(served, pin, true) },
		})
		if err != nil {
			return nil, err
		}
		if pin := src.Pin(); !pin.Configured && len(pin.Offered) > 1 {
			cfg.logger.Warn("identity.ambiguous", slog.String("spiffe_id", pin.ID.String()),
				slog.Any("offered", idStrings(pin.Offered)),
				slog.String("fix", "the Workload API hands out several SVIDs, in no fixed order: give --spiffe-id to choose which one tetherd serves as"))
		}
		id.src = src
	}
	if id.own, err = id.src.GetX509SVID(); err != nil {
		err = fmt.Errorf("no SVID: %w", err)
	} else if err = svid.Usable(id.src, time.Now()); err != nil {
		err = fmt.Errorf("own SVID not usable: %w", err)
	}
	if err != nil {
		_ = id.src.Close() // the error above is the one to report
		return nil, err
	}
	return id, nil
}

// watchFiles loads the SVID files and watches them. Every reload is logged;
// one that fails is counted, and the last good identity is kept. Files of
// another SPIFFE ID than the pinned one are such a failure, reported by
// idLog (identity.pin_missing) and making tetherd not ready.
func watchFiles(o *options, cfg *config, reloadFailures prometheus.Counter, idLog *identityLog) (*svid.FileSource, error) {
	log := cfg.logger
	// The callback may run before NewFileSource returns (it never does
	// today: the first poll is an interval away), so it reads the source
	// through a pointer published once the source exists.
	var current atomic.Pointer[svid.FileSource]
	fileSrc, err := svid.NewFileSource(svid.FileConfig{
		CertFile: o.svidCert, KeyFile: o.svidKey, BundleFile: o.bundle, ID: cfg.spiffeID,
		OnReload: func(err error) {
			fs := current.Load()
			if err != nil {
				reloadFailures.Inc()
			}
			if fs != nil {
				served, _ := fs.GetX509SVID()
				idLog.update(served, fs.Pin(), false)
			}
			if errors.Is(err, svid.ErrNotPinned) {
				return // idLog said so
			}
			if err != nil {
				log.Error("identity.reload_failed", slog.String("error", err.Error()), slog.String("kept", "last good SVID"))
				return
			}
			if fs == nil {
				return
			}
			if s, e := fs.GetX509SVID(); e == nil {
				log.Info("identity.reloaded", slog.String("spiffe_id", s.ID.String()),
					slog.String("fingerprint", svid.Fingerprint(s.Certificates[0])),
					slog.Time("not_after", s.Certificates[0].NotAfter))
			}
		},
	})
	if errors.Is(err, svid.ErrNotPinned) {
		return nil, usagef("%s: %v", cfg.name("spiffe-id"), err)
	}
	if err != nil {
		return nil, usagef("%s: %v", identityFilesAtFault(err, cfg.name), err)
	}
	current.Store(fileSrc)
	return fileSrc, nil
}

// identityFilesAtFault names, as name does, the settings of the identity
// files that err (from loading them) is the fault of: one of --svid-cert,
// --svid-key and --bundle, or --svid-cert and --svid-key for a key that does
// not match its certificate.
func identityFilesAtFault(err error, name func(flag string) string) string {
	var fe *svid.FileError
	if !errors.As(err, &fe) {
		return name("svid-cert") + ", " + name("svid-key") + " and " + name("bundle")
	}
	var names []string
	for _, f := range []struct {
		file svid.Files
		flag string
	}{{svid.FileCert, "svid-cert"}, {svid.FileKey, "svid-key"}, {svid.FileBundle, "bundle"}} {
		if fe.Files&f.file != 0 {
			names = append(names, name(f.flag))
		}
	}
	if len(names) == 0 {
		return name("svid-cert") + ", " + name("svid-key") + " and " + name("bundle")
	}
	return strings.Join(names, " and ")
}

// newSessions starts the session manager, issuing tokens as issuer, with
// its sessions in store (nil: in its own memory).
func newSessions(cfg *config, issuer spiffeid.ID, reg prometheus.Registerer, store *replicaStore) (*session.Manager, error) {
	sc := cfg.session
	sc.Issuer = issuer
	sc.Registerer = reg
	if store != nil {
		sc.Store = store.store
		sc.Key = store.key
	}
	return session.NewManager(sc)
}

// listen binds --listen and --health-listen.
func listen(o *options) (api, health net.Listener, err error) {
	if api, err = net.Listen("tcp", o.listen); err != nil {
		return nil, nil, fmt.Errorf("--listen: %w", err)
	}
	if health, err = net.Listen("tcp", o.healthListen); err != nil {
		_ = api.Close()
		return nil, nil, fmt.Errorf("--health-listen: %w", err)
	}
	return api, health, nil
}

// servers are the API server (HTTPS, mTLS) and the health server (plain
// HTTP) once they serve.
type servers struct {
	api, health *http.Server
	apiConns    *server.Listener // the API's connections
	serving     atomic.Bool      // the API serves: part of /readyz
	stopped     chan error       // a server that stopped serving, and why
}

// startServers serves the API on apiLn, behind the connection limits, and
// /healthz, /readyz and /metrics on healthLn, behind its cap.
func startServers(o *options, cfg *config, m *metrics, src svid.Source, mgr *session.Manager, apiLn, healthLn net.Listener) *servers {
	log := cfg.logger
	apiTLS := auth.ServerTLSConfig(src, src)
	s := &servers{stopped: make(chan error, 2)}
	s.api = server.NewHTTPServer(server.NewHandler(server.Config{
		Sessions: mgr, Bundles: src, Admins: cfg.admins, Introspectors: cfg.introspectors,
		Logger: log, Registerer: m.reg,
	}), apiTLS, log)
	s.health = server.NewHealthServer(server.Health(readiness(&s.serving, src, mgr), m.reg), log)
	s.apiConns = server.NewListener(apiLn, apiTLS, o.conns, log, m.reg)
	healthConns := server.LimitListener(healthLn, server.HealthMaxConnections, m.healthShed.Inc)
	go func() {
		s.serving.Store(true)
		err := s.api.Serve(s.apiConns)
		s.serving.Store(false)
		s.stopped <- err
	}()
	go func() { s.stopped <- s.health.Serve(healthConns) }()
	return s
}

// fresher is what readiness asks of the session manager.
type fresher interface{ Fresh() error }

// readiness is /readyz: nil while the API serves, as the pinned identity,
// with a usable SVID, and the sessions are provably current (with --store
// etcd, the replica's view is at most --max-staleness old); else why not.
func readiness(serving *atomic.Bool, src svid.Source, sessions fresher) func() error {
	return func() error {
		if !serving.Load() {
			return errors.New("the API listener is not serving")
		}
		if p, ok := src.(svid.Pinner); ok {
			if err := p.Pin().Err(); err != nil {
				return fmt.Errorf("not serving as the pinned SPIFFE ID (--spiffe-id, else the one tetherd started with); the last SVID with it is served until it expires: %w", err)
			}
		}
		if err := svid.Usable(src, time.Now()); err != nil {
			return err
		}
		if err := sessions.Fresh(); err != nil {
			// The store's own words (the refusal's public message), not
			// the error's code and reason.
			var se *session.Error
			if errors.As(err, &se) && se.Detail != "" {
				return errors.New(se.Detail)
			}
			return err
		}
		return nil
	}
}

// shutdown stops both servers, letting in-flight requests finish until ctx
// ends; then it closes the connections that are left (cut: how many API
// connections that was; -1 if the API drained before ctx ended). errs are
// the other failures.
func (s *servers) shutdown(ctx context.Context) (cut int, errs []error) {
	s.serving.Store(false)
	cut = -1
	if err := s.api.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		// The bound is reached: what is still open is cut, which is what
		// the bound is for, not a failure.
		cut = s.apiConns.Open()
		_ = s.api.Close() // its listener is closed already; what it closes now is the connections
	} else if err != nil {
		errs = append(errs, fmt.Errorf("draining the API: %w", err))
	}
	if err := s.health.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		_ = s.health.Close() // likewise: a probe or a scrape, cut
	} else if err != nil {
		errs = append(errs, fmt.Errorf("stopping health: %w", err))
	}
	return cut, errs
}

// logStarted logs tetherd.started with what tetherd serves and how, and
// warns if the open-file limit is below the connection caps.
func logStarted(log *slog.Logger, o *options, cfg *config, own spiffeid.ID, api, health net.Addr) {
	log.Info("tetherd.started",
		slog.String("version", cli.Version()),
		slog.String("spiffe_id", own.String()),
		slog.String("listen", api.String()),
		slog.String("health_listen", health.String()),
		slog.Any("admins", cfg.admins.Strings()),
		slog.Any("introspectors", cfg.introspectors.Strings()),
		slog.Duration("session_ttl", cfg.session.TTL), slog.Duration("idle_timeout", cfg.session.IdleTimeout),
		slog.Int("max_sessions", cfg.session.MaxSessions), slog.Int("max_sessions_per_identity", cfg.session.MaxSessionsPerIdentity),
		slog.Float64("login_rate", o.loginRate), slog.Int("login_burst", o.loginBurst),
		slog.Int("max_connections", o.conns.MaxConnections), slog.Int("max_connections_per_identity", o.conns.MaxPerIdentity),
		slog.Int("max_handshakes", o.conns.MaxHandshakes),
		cfg.store.attrs(),
		logRoles(cfg.roles))
	warnDescriptors(log, o.conns.MaxConnections+server.HealthMaxConnections)
}

// waitForStop serves until ctx ends (SIGTERM, SIGINT), which is no error,
// or a server stops by itself, which is. Meanwhile each SIGHUP reloads the
// identity files (files is nil when the identity is not files).
func waitForStop(ctx context.Context, log *slog.Logger, files *svid.FileSource, hup <-chan os.Signal, stopped <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if files == nil {
				log.Info("identity.reload_skipped", slog.String("reason", "SIGHUP reloads file identities only"))
				continue
			}
			log.Info("identity.reload_requested", slog.String("signal", "SIGHUP"))
			_ = files.Reload() // the outcome is logged by OnReload
		case err := <-stopped:
			return fmt.Errorf("serving stopped: %w", err)
		}
	}
}

// drain stops the servers, giving in-flight requests up to timeout (then
// cutting the connections left, with a tetherd.drain_timeout warning: that
// is the bound working, not a failure), logs tetherd.stopped, and flushes
// the log's last summary of suppressed lines. The error joins runErr with
// what went wrong on the way. shared says the sessions live on in a store
// other replicas share (--store etcd).
func drain(log *slog.Logger, timeout time.Duration, srv *servers, mgr *session.Manager, shared bool, runErr error) error {
	log.Info("tetherd.stopping", slog.Duration("drain_timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cut, errs := srv.shutdown(ctx)
	errs = append([]error{runErr}, errs...)
	if cut >= 0 {
		log.Warn("tetherd.drain_timeout", slog.Duration("shutdown_timeout", timeout), slog.Int("connections_cut", cut),
			slog.String("fix", "requests still in flight at --shutdown-timeout were cut: clients retry them; raise --shutdown-timeout if they were legitimately slow"))
	}
	if shared {
		log.Info("tetherd.stopped", slog.Int("sessions_kept", mgr.Len()))
	} else {
		log.Info("tetherd.stopped", slog.Int("sessions_dropped", mgr.Len()))
	}
	if h, ok := log.Handler().(*logthrottle.Handler); ok {
		_ = h.Flush(context.Background()) // report the last window's suppressed lines before exit
	}
	return errors.Join(errs...)
}

// warnDescriptors logs a warning when the open-file limit is too low for the
// connection caps: the caps would then not be what runs out first.
func warnDescriptors(log *slog.Logger, conns int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	// Beyond the connections: listeners, files, the Workload API, logs.
	const reserve = 64
	if lim.Cur < uint64(conns+reserve) { //nolint:gosec // G115: conns is a sum of flags checked positive
		log.Warn("tetherd.descriptors_low", slog.Uint64("open_file_limit", lim.Cur),
			slog.Int("needed", conns+reserve),
			slog.String("fix", "raise the open-file limit (ulimit -n, LimitNOFILE=) or lower --max-connections"))
	}
}
