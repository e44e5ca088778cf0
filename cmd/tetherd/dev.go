package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/auth"
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
	devLifetime     = 24 * time.Hour
)

func newDevCmd(o *options) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "dev [--dir DIR]",
		Short: "Serve with a throwaway trust domain, for trying tether out",
		Long: `dev makes a throwaway CA and trust domain (tether.test) in memory, writes the
bundle, an admin SVID (spiffe://tether.test/admin/dev) and a non-admin SVID
(spiffe://tether.test/workload/demo) as PEM files to --dir, and serves on
loopback with --admin 'spiffe://tether.test/admin/*' and the non-admin as
--introspector. It prints the export lines that point the tether CLI at it.
Nothing it makes is usable outside this machine, or after it stops.`,
		Example: `  eval "$(tetherd dev --dir /tmp/tether-dev 2>/dev/null &)"   # or run it in one
  tetherd dev                                                   # terminal and copy the exports`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			setup, err := prepareDev(dir)
			if err != nil {
				return err
			}
			return serve(cmd, o, setup)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "folder for the PEM files: yours, not writable by others, made 0700 if missing (default: a new temporary folder)")
	return cmd
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

func prepareDev(dir string) (*devSetup, error) {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tether-dev-"); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
	} else if err = devDir(dir, os.Getuid()); err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, usagef("--dir: %v", err)
	}
	td := spiffeid.RequireTrustDomainFromString(devTrustDomain)
	ca, err := devpki.NewCA(td, devLifetime)
	if err != nil {
		return nil, err
	}
	serverSVID, err := ca.Issue(spiffeid.RequireFromString(devServerID), devLifetime)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, who := range []struct{ name, id string }{{"admin", devAdminID}, {"user", devUserID}} {
		s, err := ca.Issue(spiffeid.RequireFromString(who.id), devLifetime)
		if err != nil {
			return nil, err
		}
		cert, key := filepath.Join(dir, who.name+".pem"), filepath.Join(dir, who.name+".key")
		if err := devpki.WriteSVID(s, cert, key); err != nil {
			return nil, err
		}
		files[who.name] = cert
	}
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := ca.WriteBundle(bundlePath); err != nil {
		return nil, err
	}
	admins, _ := auth.ParsePolicy([]string{devAdminPattern})
	introspectors, _ := auth.ParsePolicy([]string{devUserID})
	return &devSetup{
		source:        &svid.StaticSource{SVID: serverSVID, Bundles: x509bundle.NewSet(ca.Bundle())},
		admins:        admins,
		introspectors: introspectors,
		announce: func(w io.Writer, apiAddr string) {
			_, _ = fmt.Fprintf(w, `# tetherd dev: throwaway trust domain %s, files in %s
# admin: %s   non-admin (introspector): %s
export TETHER_SERVER=https://%s
export TETHER_SERVER_ID=%s
export TETHER_BUNDLE=%s
export TETHER_SVID_CERT=%s
export TETHER_SVID_KEY=%s
# to act as the non-admin instead:
#   export TETHER_SVID_CERT=%s TETHER_SVID_KEY=%s
`, devTrustDomain, dir, devAdminID, devUserID, apiAddr, devServerID, bundlePath,
				files["admin"], filepath.Join(dir, "admin.key"),
				files["user"], filepath.Join(dir, "user.key"))
		},
	}, nil
}
