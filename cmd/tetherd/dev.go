package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/internal/atomicfile"
	"github.com/tetherproject/tether/internal/devpki"
	"github.com/tetherproject/tether/internal/fileowner"
	"github.com/tetherproject/tether/svid"
)

// Dev mode's throwaway trust domain and identities.
const (
	devTrustDomain  = "tether.test"
	devServerID     = "spiffe://tether.test/tetherd"
	devAdminID      = "spiffe://tether.test/admin/dev"
	devAdminPattern = "spiffe://tether.test/admin/*"
	devUserID       = "spiffe://tether.test/workload/demo"
	// devLifetime is the life of the CA and of tetherd's own SVID, and the
	// longest --svid-ttl.
	devLifetime = 24 * time.Hour
	// devMinSVIDTTL is the shortest --svid-ttl. Re-issued at half-life, two
	// leaves are then at least a second apart, so that each has a later
	// NotBefore (X.509 counts whole seconds) than the one before: a rebind
	// to a leaf that is not newer is refused.
	devMinSVIDTTL = 2 * time.Second
	// devEnvFile is the file in the dev folder that holds the lines dev
	// prints, to be sourced by a shell.
	devEnvFile = "env"
)

// devClients are the SVIDs dev mode writes for the tether CLI, by file name:
// NAME.pem (the certificate) and NAME.key (its PKCS#8 key).
var devClients = []struct{ name, id string }{{"admin", devAdminID}, {"user", devUserID}}

func newDevCmd(o *options) *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev [--dir DIR] [--svid-ttl DUR]",
		Short: "Serve with a throwaway trust domain, for trying tether out",
		Long: `dev makes a throwaway CA and trust domain (tether.test) in memory, writes the
bundle, an admin SVID (spiffe://tether.test/admin/dev) and a non-admin SVID
(spiffe://tether.test/workload/demo) as PEM files to --dir, and serves on
loopback with --admin 'spiffe://tether.test/admin/*' and the non-admin as
--introspector. Nothing it makes is usable outside this machine, or after it
stops. A folder it made itself (no --dir) is removed when it stops.

Once it serves, it writes to DIR/env and prints the lines that point the
tether CLI at it (they unset SPIFFE_ENDPOINT_SOCKET: the CLI refuses a Workload
API and these files at once), then closes its standard output, so that
eval "$(tetherd dev &)" returns. tetherd's own SVID also names localhost and
the loopback addresses, so that curl can verify it against DIR/bundle.pem.

The admin and non-admin SVIDs are re-issued at half of --svid-ttl, as SPIRE
rotates SVIDs at half-life: the CLI's next command finds the new certificate
and rebinds its session to it (the same session ID, a new fingerprint).`,
		Example: `  # in one terminal: serve until Ctrl-C, a new admin SVID every minute
  tetherd dev --dir /tmp/tether-dev --svid-ttl 2m
  # in another: point the CLI at it
  . /tmp/tether-dev/env
  tether login
  tether whoami     # a minute later: the same session, bound to a new fingerprint

  # or, in a script: serve in the background until killed
  eval "$(tetherd dev 2>/dev/null &)"
  tether login
  kill $TETHERD_DEV_PID`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd, o, f)
		},
	}
	cmd.Flags().StringVar(&f.dir, "dir", "", "folder for the PEM files and env: yours, not writable by others, made 0700 if missing (default: a new temporary folder, removed on exit)")
	cmd.Flags().DurationVar(&f.svidTTL, "svid-ttl", devLifetime, "lifetime of the admin and non-admin SVIDs, re-issued at half of it ("+devMinSVIDTTL.String()+" to "+devLifetime.String()+")")
	return cmd
}

// devFlags are the flags of dev alone.
type devFlags struct {
	dir     string
	svidTTL time.Duration
}

// runDev checks every flag, then makes the dev folder and PKI, re-issues the
// client SVIDs while tetherd serves, and removes a folder it made itself on
// the way out.
func runDev(cmd *cobra.Command, o *options, f devFlags) (err error) {
	// serve checks the options again; checked here too, a command line that
	// exits 2 has written nothing: no folder, no key.
	cfg, err := o.check(cmd, true)
	if err != nil {
		return err
	}
	if f.svidTTL < devMinSVIDTTL || f.svidTTL > devLifetime {
		return usagef("--svid-ttl: %s is not between %s and %s", f.svidTTL, devMinSVIDTTL, devLifetime)
	}
	dir, err := devFolder(f.dir)
	if err != nil {
		return err
	}
	if f.dir == "" {
		// dev's own folder goes when dev does: after SIGTERM or SIGINT, or
		// a failure to serve. A folder given with --dir is the user's.
		defer func() {
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("dev: removing %s: %w", dir, rmErr))
			}
		}()
	}
	d := &devMode{dir: dir, ttl: f.svidTTL, listen: o.listen, log: cfg.logger}
	setup, err := d.prepare()
	if err != nil {
		return err
	}
	stop := d.rotate()
	defer stop()
	return serve(cmd, o, setup)
}

// devFolder returns the absolute path of the folder for dev's files: --dir
// (made by devDir if missing), or else a new temporary folder. Its name goes
// into lines for a shell: one with a control character is refused.
func devFolder(flag string) (string, error) {
	if flag == "" {
		dir, err := os.MkdirTemp("", "tether-dev-")
		if err != nil {
			return "", fmt.Errorf("dev: %w", err)
		}
		if strings.ContainsFunc(dir, unicode.IsControl) {
			return "", errors.Join(fmt.Errorf("dev: %q has a control character in its name: set TMPDIR, or give --dir", dir), os.Remove(dir))
		}
		return dir, nil
	}
	dir, err := filepath.Abs(flag)
	if err != nil {
		return "", usagef("--dir: %v", err)
	}
	if strings.ContainsFunc(dir, unicode.IsControl) {
		return "", usagef("--dir: %q has a control character in its name: give another folder", dir)
	}
	return dir, devDir(flag, os.Getuid())
}

// devDir makes dir 0700 (and its missing parents), or checks the folder that
// is there: it gets an admin's private key and the bundle tether trusts, so
// it must be a folder of uid's, not a symbolic link (which its owner could
// point elsewhere later), and not writable by group or others (who could
// replace the files).
func devDir(dir string, uid int) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return usagef("--dir: %v", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return usagef("--dir: %v", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return usagef("--dir: %s is a symbolic link: give the folder itself", dir)
	case !fi.IsDir():
		return usagef("--dir: %s is not a folder", dir)
	}
	if owner, ok := fileowner.Of(fi); ok && owner != uid {
		return usagef("--dir: %s belongs to uid %d, not to you (uid %d): give a folder of your own", dir, owner, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return usagef("--dir: %s is writable by other users (mode %04o): chmod 700 %s, or give another folder", dir, perm, dir)
	}
	return nil
}

// devMode is a running dev mode: its folder, its CA, and how often it
// re-issues the client SVIDs.
type devMode struct {
	dir    string        // absolute
	ttl    time.Duration // of the client SVIDs
	listen string        // --listen, whose host tetherd's SVID names
	log    *slog.Logger
	ca     *devpki.CA
}

func (d *devMode) path(name string) string { return filepath.Join(d.dir, name) }

// prepare makes the CA and tetherd's SVID, writes the bundle and the client
// SVIDs, and returns what serve needs.
func (d *devMode) prepare() (*devSetup, error) {
	var err error
	if d.ca, err = devpki.NewCA(spiffeid.RequireTrustDomainFromString(devTrustDomain), devLifetime); err != nil {
		return nil, err
	}
	own, err := d.serverSVID()
	if err != nil {
		return nil, err
	}
	for _, c := range devClients {
		if _, err := d.issue(c.name, c.id); err != nil {
			return nil, err
		}
	}
	if err := d.ca.WriteBundle(d.path("bundle.pem")); err != nil {
		return nil, err
	}
	admins, _ := auth.ParsePolicy([]string{devAdminPattern})
	introspectors, _ := auth.ParsePolicy([]string{devUserID})
	return &devSetup{
		source:        &svid.StaticSource{SVID: own, Bundles: x509bundle.NewSet(d.ca.Bundle())},
		admins:        admins,
		introspectors: introspectors,
		announce:      d.announce,
	}, nil
}

// serverSVID is tetherd's own SVID. Besides its one URI SAN, the SPIFFE ID,
// it names localhost and the loopback addresses, as the X509-SVID
// specification allows: a client that checks a host name instead of a
// SPIFFE ID (curl) can then verify it against bundle.pem, with no -k.
// tether and pkg/client check the SPIFFE ID and ignore these names.
func (d *devMode) serverSVID() (*x509svid.SVID, error) {
	id := spiffeid.RequireFromString(devServerID)
	tmpl := devpki.LeafTemplate(id, devLifetime)
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if host, _, err := net.SplitHostPort(d.listen); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.Equal(tmpl.IPAddresses[0]) && !ip.Equal(tmpl.IPAddresses[1]) {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip) // another loopback address, 127.0.0.2 say
		}
	}
	cert, key, err := d.ca.Sign(tmpl)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// issue issues a new SVID for id and writes it as NAME.pem and NAME.key,
// each file atomically.
func (d *devMode) issue(name, id string) (*x509svid.SVID, error) {
	s, err := d.ca.Issue(spiffeid.RequireFromString(id), d.ttl)
	if err != nil {
		return nil, err
	}
	if err := devpki.WriteSVID(s, d.path(name+".pem"), d.path(name+".key")); err != nil {
		return nil, err
	}
	return s, nil
}

// announce writes the lines that point the CLI at tetherd to DIR/env, prints
// them on w, and closes w if it can be closed (os.Stdout): a shell running
// `eval "$(tetherd dev &)"` waits for the end of that output, not of tetherd.
func (d *devMode) announce(w io.Writer, apiAddr string) {
	lines := d.exports(apiAddr)
	if err := atomicfile.Write(d.path(devEnvFile), []byte(lines), 0o600); err != nil {
		d.log.Error("dev.env_file_failed", slog.String("error", err.Error()))
	}
	_, _ = io.WriteString(w, lines) // nothing to do if stdout is gone
	if c, ok := w.(io.Closer); ok {
		_ = c.Close()
	}
}

// exports are the shell lines that point the tether CLI at this tetherd.
func (d *devMode) exports(apiAddr string) string {
	q := shellQuote
	var b strings.Builder
	fmt.Fprintf(&b, "# tetherd dev: throwaway trust domain %s, files in %s\n", devTrustDomain, q(d.dir))
	fmt.Fprintf(&b, "# admin: %s   non-admin (introspector): %s\n", devAdminID, devUserID)
	fmt.Fprintf(&b, "# their SVIDs are re-issued every %s (--svid-ttl %s)\n", d.ttl/2, d.ttl)
	b.WriteString("# the CLI refuses two identity sources: a Workload API and these files\n")
	b.WriteString("unset SPIFFE_ENDPOINT_SOCKET\n")
	fmt.Fprintf(&b, "export TETHER_SERVER=%s\n", q("https://"+apiAddr))
	fmt.Fprintf(&b, "export TETHER_SERVER_ID=%s\n", devServerID)
	fmt.Fprintf(&b, "export TETHER_BUNDLE=%s\n", q(d.path("bundle.pem")))
	fmt.Fprintf(&b, "export TETHER_SVID_CERT=%s\n", q(d.path("admin.pem")))
	fmt.Fprintf(&b, "export TETHER_SVID_KEY=%s\n", q(d.path("admin.key")))
	fmt.Fprintf(&b, "TETHERD_DEV_PID=%d   # to stop it: kill $TETHERD_DEV_PID\n", os.Getpid())
	b.WriteString("# to act as the non-admin instead:\n")
	fmt.Fprintf(&b, "#   export TETHER_SVID_CERT=%s TETHER_SVID_KEY=%s\n", q(d.path("user.pem")), q(d.path("user.key")))
	fmt.Fprintf(&b, "# these lines are in %s too: . %s\n", q(d.path(devEnvFile)), q(d.path(devEnvFile)))
	return b.String()
}

// shellQuote is s as one shell word: as it is if it needs no quoting, else
// in single quotes.
func shellQuote(s string) string {
	unsafe := func(r rune) bool {
		return r >= unicode.MaxASCII || !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("@%+=:,./-_", r)
	}
	if s != "" && !strings.ContainsFunc(s, unsafe) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
