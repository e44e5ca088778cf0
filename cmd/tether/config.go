package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/tetherproject/tether/internal/boundedfile"
	"github.com/tetherproject/tether/pkg/client"
	svidsource "github.com/tetherproject/tether/svid"
)

// Environment variables of the global flags.
const (
	envServer      = "TETHER_SERVER"
	envServerID    = "TETHER_SERVER_ID"
	envWorkloadAPI = "SPIFFE_ENDPOINT_SOCKET"
	envSVIDCert    = "TETHER_SVID_CERT"
	envSVIDKey     = "TETHER_SVID_KEY"
	envBundle      = "TETHER_BUNDLE"
	envSPIFFEID    = "TETHER_SPIFFE_ID"
	envOutput      = "TETHER_OUTPUT"
	envCacheDir    = "TETHER_CACHE_DIR"

	defaultServer = "https://127.0.0.1:8443"

	// requestTimeout bounds every command's conversation with tetherd.
	requestTimeout = 30 * time.Second
)

// globals are the values of the global (persistent) flags as given; a flag
// that is not given falls back to its environment variable.
type globals struct {
	server, serverID          string
	workloadAPI               string
	svidCert, svidKey, bundle string
	spiffeID                  string
	output                    string
	workloadAPITimeout        time.Duration
	verbose                   bool
	getenv                    func(string) string
}

func (g *globals) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.server, "server", "", "tetherd's URL (env "+envServer+", default "+defaultServer+")")
	f.StringVar(&g.serverID, "server-id", "", "tetherd's SPIFFE ID; any other is refused (env "+envServerID+", required)")
	f.StringVar(&g.workloadAPI, "workload-api", "", "own SVID from the SPIFFE Workload API at ADDR, unix:///path or tcp://ip:port (env "+envWorkloadAPI+")")
	f.StringVar(&g.svidCert, "svid-cert", "", "own SVID from files: the certificate chain, PEM (env "+envSVIDCert+")")
	f.StringVar(&g.svidKey, "svid-key", "", "own SVID from files: its PKCS#8 private key, PEM (env "+envSVIDKey+")")
	f.StringVar(&g.bundle, "bundle", "", "own SVID from files: the trust bundle that verifies tetherd, PEM (env "+envBundle+")")
	f.StringVar(&g.spiffeID, "spiffe-id", "", "own SVID: the SPIFFE ID to act as, picked among the Workload API's SVIDs (files must hold it) (env "+envSPIFFEID+"; on sessions list|revoke, --spiffe-id is theirs: use the variable)")
	f.StringVarP(&g.output, "output", "o", "", "text or json (env "+envOutput+", default text)")
	f.DurationVar(&g.workloadAPITimeout, "workload-api-timeout", 10*time.Second, "how long to wait for an SVID from the Workload API")
	_ = f.MarkHidden("workload-api-timeout")
	f.BoolVarP(&g.verbose, "verbose", "v", false, "log what the client does (logins, rebinds, retries; never a token) to stderr")
}

// logger is the debug log of -v on w (stderr), else a silent one.
func (g *globals) logger(w io.Writer) *slog.Logger {
	if !g.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// value is the flag's value if given, else the environment variable's.
func (g *globals) value(cmd *cobra.Command, flag, env string) (string, bool) {
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return f.Value.String(), true
	}
	return g.getenv(env), false
}

// outputFormat is "text" or "json".
func (g *globals) outputFormat(cmd *cobra.Command) (string, error) {
	out, fromFlag := g.value(cmd, "output", envOutput)
	switch out {
	case "text", "json":
		return out, nil
	case "":
		if fromFlag {
			return "", usagef("--output: give text or json")
		}
		return "text", nil
	default:
		if fromFlag {
			return "", usagef("--output: %q is not text or json", out)
		}
		return "", usagef("%s: %q is not text or json", envOutput, out)
	}
}

// target is where and to whom the CLI talks.
type target struct {
	server   string
	serverID spiffeid.ID
}

func (g *globals) target(cmd *cobra.Command) (*target, error) {
	server, _ := g.value(cmd, "server", envServer)
	if server == "" {
		server = defaultServer
	}
	// Normalised as the client does: the cache file is named after it.
	u, err := client.ParseServerURL(server)
	if err != nil {
		return nil, usagef("--server: %q is not an https://host:port URL", server)
	}
	server = u.String()
	rawID, _ := g.value(cmd, "server-id", envServerID)
	if rawID == "" {
		return nil, usagef("--server-id (or %s) is required: tetherd's SPIFFE ID, e.g. spiffe://example.org/tetherd", envServerID)
	}
	id, err := spiffeid.FromString(rawID)
	if err != nil {
		return nil, usagef("--server-id: %q is not a SPIFFE ID: %v", rawID, err)
	}
	return &target{server: server, serverID: id}, nil
}

// identity is the caller's SVID and trust bundles.
type identity struct {
	svids   x509svid.Source
	bundles x509bundle.Source
	id      spiffeid.ID
	close   func() error
}

// identitySource picks exactly one identity source. A flag beats the
// environment: --svid-cert... with SPIFFE_ENDPOINT_SOCKET set in the
// environment takes the files. Both given as flags, or both only in the
// environment, is a usage error.
func (g *globals) identitySource(cmd *cobra.Command) (workloadAPI string, files [3]string, err error) {
	wl, wlFlag := g.value(cmd, "workload-api", envWorkloadAPI)
	names := [3][2]string{{"svid-cert", envSVIDCert}, {"svid-key", envSVIDKey}, {"bundle", envBundle}}
	var filesFlag, filesAny bool
	for i, n := range names {
		v, fromFlag := g.value(cmd, n[0], n[1])
		files[i] = v
		filesFlag = filesFlag || fromFlag
		filesAny = filesAny || v != ""
	}
	switch {
	case wl != "" && filesAny && wlFlag == filesFlag:
		return "", files, usagef("choose one identity source: --workload-api (%s) or --svid-cert, --svid-key and --bundle (%s...)", envWorkloadAPI, "TETHER_SVID_")
	case wl != "" && (wlFlag || !filesAny):
		if _, err := workloadapi.TargetFromAddress(wl); err != nil {
			return "", files, usagef("--workload-api: %q is not unix:///path or tcp://ip:port", wl)
		}
		if g.workloadAPITimeout <= 0 {
			return "", files, usagef("--workload-api-timeout: must be positive")
		}
		return wl, [3]string{}, nil
	case filesAny:
		for i, n := range names {
			if files[i] == "" {
				return "", files, usagef("--svid-cert, --svid-key and --bundle go together: --%s (or %s) is missing", n[0], n[1])
			}
		}
		return "", files, nil
	default:
		return "", files, usagef("no identity: give --workload-api (or set %s), or --svid-cert, --svid-key and --bundle (or %s, %s, %s)", envWorkloadAPI, envSVIDCert, envSVIDKey, envBundle)
	}
}

// ownID is the SPIFFE ID the caller acts as, from --spiffe-id (the global
// flag: on sessions list and revoke, their own --spiffe-id shadows it) or
// TETHER_SPIFFE_ID; zero if neither is given. Its name is the one given,
// for messages.
func (g *globals) ownID(cmd *cobra.Command) (id spiffeid.ID, name string, err error) {
	raw, name := g.getenv(envSPIFFEID), envSPIFFEID
	if f := cmd.Root().PersistentFlags().Lookup("spiffe-id"); f != nil && f.Changed {
		raw, name = f.Value.String(), "--spiffe-id"
	}
	if raw == "" {
		return spiffeid.ID{}, "", nil
	}
	if id, err = spiffeid.FromString(raw); err != nil {
		return spiffeid.ID{}, name, usagef("%s: %q is not a SPIFFE ID: %v", name, raw, err)
	}
	return id, name, nil
}

// loadIdentity loads the SVID from the chosen source: among the Workload
// API's SVIDs the one of own (named ownName) if given, else the first;
// files must hold own if given. The bundle of PEM files is the trust domain
// of --server-id's.
func (g *globals) loadIdentity(ctx context.Context, workloadAPI string, files [3]string, serverID, own spiffeid.ID, ownName string, log *slog.Logger) (*identity, error) {
	if workloadAPI != "" {
		if err := checkSocket(workloadAPI); err != nil {
			return nil, err
		}
		src, err := svidsource.OpenWorkload(ctx, svidsource.WorkloadConfig{Addr: workloadAPI, Timeout: g.workloadAPITimeout, ID: own, Logger: log})
		if errors.Is(err, svidsource.ErrNotPinned) {
			return nil, failf("%s (check %s)", strings.TrimPrefix(err.Error(), "svid: "), ownName)
		}
		if err != nil {
			return nil, failf("%s (check --workload-api)", strings.TrimPrefix(err.Error(), "svid: "))
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			_ = src.Close()
			return nil, failf("no X.509 SVID from the Workload API at %s: %v", workloadAPI, err)
		}
		return &identity{svids: src, bundles: src, id: svid.ID, close: src.Close}, nil
	}
	svid, err := loadSVID(files[0], files[1])
	if err != nil {
		return nil, failf("cannot load the SVID from --svid-cert %s and --svid-key %s: %s", files[0], files[1], strings.TrimPrefix(err.Error(), "x509svid: "))
	}
	if !own.IsZero() && svid.ID != own {
		return nil, usagef("%s %s: --svid-cert %s holds an SVID of %s", ownName, own, files[0], svid.ID)
	}
	bundle, err := loadBundle(serverID.TrustDomain(), files[2])
	if err != nil {
		return nil, failf("cannot load the trust bundle --bundle %s: %s", files[2], strings.TrimPrefix(err.Error(), "x509bundle: "))
	}
	return &identity{svids: svid, bundles: bundle, id: svid.ID, close: func() error { return nil }}, nil
}

// env is what a command that talks to tetherd works with.
type env struct {
	ctx    context.Context
	out    *printer
	id     spiffeid.ID
	client *client.Client
	store  *fileStore
	close  func()
	// newClient makes another client of the same tetherd, identity and
	// cache, logging in by itself or not (login --wait polls without).
	newClient func(autoLogin bool) (*client.Client, error)
}

// newEnv checks the global flags, loads the identity, checks the token cache
// (making its folder if autoLogin) and makes the client. autoLogin says
// whether requests log in by themselves.
func (g *globals) newEnv(cmd *cobra.Command, autoLogin bool) (*env, error) {
	format, err := g.outputFormat(cmd)
	if err != nil {
		return nil, err
	}
	t, err := g.target(cmd)
	if err != nil {
		return nil, err
	}
	workloadAPI, files, err := g.identitySource(cmd)
	if err != nil {
		return nil, err
	}
	own, ownName, err := g.ownID(cmd)
	if err != nil {
		return nil, err
	}
	log := g.logger(cmd.ErrOrStderr())
	ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
	ident, err := g.loadIdentity(ctx, workloadAPI, files, t.serverID, own, ownName, log)
	if err != nil {
		cancel()
		return nil, err
	}
	cleanup := func() {
		_ = ident.close()
		cancel()
	}
	dir, err := cacheDir(g.getenv)
	if err != nil {
		cleanup()
		return nil, err
	}
	e := &env{ctx: ctx, out: &printer{w: cmd.OutOrStdout(), json: format == "json"}, id: ident.id}
	e.store = newFileStore(dir, t.server, ident.id)
	// Before any call to tetherd: a command that may log in must be able to
	// keep the session, and no command reads a token from a folder or file
	// that someone else could write.
	if err := e.store.prepare(autoLogin); err != nil {
		cleanup()
		return nil, err
	}
	log.Debug("tether.identity", "server", t.server, "server_id", t.serverID.String(), "spiffe_id", ident.id.String(), "cache", e.store.path)
	e.newClient = func(autoLogin bool) (*client.Client, error) {
		return client.New(t.server, t.serverID, ident.svids, ident.bundles,
			client.WithTokenStore(e.store), client.WithAutoLogin(autoLogin), client.WithLogger(log))
	}
	e.client, err = e.newClient(autoLogin)
	if err != nil {
		cleanup()
		return nil, err // its arguments were checked above: a bug
	}
	e.close = func() {
		_ = e.client.Close()
		cleanup()
	}
	return e, nil
}

// loadSVID is x509svid.Load with bounded reads (a path to /dev/zero is an
// error, not an out-of-memory kill).
func loadSVID(certFile, keyFile string) (*x509svid.SVID, error) {
	cert, err := boundedfile.Read(certFile, boundedfile.MaxPEM)
	if err != nil {
		return nil, err
	}
	key, err := boundedfile.Read(keyFile, boundedfile.MaxPEM)
	if err != nil {
		return nil, err
	}
	return x509svid.Parse(cert, key)
}

// loadBundle is x509bundle.Load with a bounded read.
func loadBundle(td spiffeid.TrustDomain, path string) (*x509bundle.Bundle, error) {
	b, err := boundedfile.Read(path, boundedfile.MaxPEM)
	if err != nil {
		return nil, err
	}
	return x509bundle.Parse(td, b)
}
