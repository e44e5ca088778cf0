package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

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

// serve runs tetherd until SIGTERM or SIGINT.
func serve(cmd *cobra.Command, o *options, dev *devSetup) error {
	cfg, err := o.check(cmd, dev != nil)
	if err != nil {
		return err
	}
	log := cfg.logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloadFailures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tether_identity_reload_failures_total",
		Help: "Changed SVID files that could not be loaded (the last good identity was kept).",
	})
	reg.MustRegister(reloadFailures)

	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Identity.
	var src svid.Source
	var fileSrc *svid.FileSource
	switch {
	case dev != nil:
		src = dev.source
		cfg.admins = append(cfg.admins, dev.admins...)
		cfg.introspectors = append(cfg.introspectors, dev.introspectors...)
	case cfg.files:
		// The callback may run before NewFileSource returns (it never does
		// today: the first poll is an interval away), so it reads the source
		// through a pointer published once the source exists.
		var current atomic.Pointer[svid.FileSource]
		fileSrc, err = svid.NewFileSource(svid.FileConfig{
			CertFile: o.svidCert, KeyFile: o.svidKey, BundleFile: o.bundle,
			OnReload: func(err error) {
				if err != nil {
					reloadFailures.Inc()
					log.Error("identity.reload_failed", slog.String("error", err.Error()), slog.String("kept", "last good SVID"))
					return
				}
				fs := current.Load()
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
		if err != nil {
			return usagef("--svid-cert: %v", err)
		}
		current.Store(fileSrc)
		src = fileSrc
	default:
		log.Info("identity.waiting", slog.String("workload_api", cfg.workloadAPI), slog.Duration("timeout", o.startupTimeout))
		src, err = svid.NewWorkloadSource(ctx, cfg.workloadAPI, o.startupTimeout, log)
		if err != nil {
			return err
		}
	}
	defer func() { _ = src.Close() }() // nothing to do about a failed close at exit
	own, err := src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("no SVID: %w", err)
	}
	if err := svid.Usable(src, time.Now()); err != nil {
		return fmt.Errorf("own SVID not usable: %w", err)
	}

	// Sessions.
	cfg.session.Issuer = own.ID
	cfg.session.Registerer = reg
	mgr, err := session.NewManager(cfg.session)
	if err != nil {
		return err
	}
	defer func() { _ = mgr.Close() }()

	// Listeners.
	apiLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	healthLn, err := net.Listen("tcp", o.healthListen)
	if err != nil {
		_ = apiLn.Close()
		return fmt.Errorf("--health-listen: %w", err)
	}
	handler := server.NewHandler(server.Config{
		Sessions: mgr, Bundles: src, Admins: cfg.admins, Introspectors: cfg.introspectors,
		Logger: log,
	})
	apiTLS := auth.ServerTLSConfig(src, src)
	apiConns := server.NewListener(apiLn, apiTLS, o.conns, log, reg)
	apiSrv := server.NewHTTPServer(handler, apiTLS, log)
	var serving atomic.Bool
	ready := func() error {
		if !serving.Load() {
			return errors.New("the API listener is not serving")
		}
		return svid.Usable(src, time.Now())
	}
	healthSrv := server.NewHealthServer(server.Health(ready, reg), log)
	healthShed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tether_health_connections_refused_total",
		Help: "Connections to --health-listen closed at once because the listener's connection cap was reached.",
	})
	reg.MustRegister(healthShed)
	healthConns := server.LimitListener(healthLn, server.HealthMaxConnections, healthShed.Inc)

	errc := make(chan error, 2)
	go func() {
		serving.Store(true)
		err := apiSrv.Serve(apiConns)
		serving.Store(false)
		errc <- err
	}()
	go func() { errc <- healthSrv.Serve(healthConns) }()

	log.Info("tetherd.started",
		slog.String("version", cli.Version()),
		slog.String("spiffe_id", own.ID.String()),
		slog.String("listen", apiLn.Addr().String()),
		slog.String("health_listen", healthLn.Addr().String()),
		slog.Any("admins", cfg.admins.Strings()),
		slog.Any("introspectors", cfg.introspectors.Strings()),
		slog.Duration("session_ttl", cfg.session.TTL), slog.Duration("idle_timeout", cfg.session.IdleTimeout),
		slog.Int("max_connections", o.conns.MaxConnections), slog.Int("max_connections_per_identity", o.conns.MaxPerIdentity),
		slog.Int("max_handshakes", o.conns.MaxHandshakes))
	warnDescriptors(log, o.conns.MaxConnections+server.HealthMaxConnections)
	if dev != nil {
		dev.announce(cmd.OutOrStdout(), apiLn.Addr().String())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			if fileSrc == nil {
				log.Info("identity.reload_skipped", slog.String("reason", "SIGHUP reloads file identities only"))
				continue
			}
			log.Info("identity.reload_requested", slog.String("signal", "SIGHUP"))
			_ = fileSrc.Reload() // the outcome is logged by OnReload
		case err := <-errc:
			runErr = fmt.Errorf("serving stopped: %w", err)
			break loop
		}
	}

	log.Info("tetherd.stopping", slog.Duration("drain_timeout", o.shutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	serving.Store(false)
	errs := []error{runErr}
	if err := apiSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("draining the API: %w", err))
	}
	if err := healthSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("stopping health: %w", err))
	}
	log.Info("tetherd.stopped", slog.Int("sessions_dropped", mgr.Len()))
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
