package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
)

// TestDevMode runs `tetherd dev` in-process: it writes the bundle and two
// SVIDs, prints the lines that point the CLI at its listener (unsetting
// SPIFFE_ENDPOINT_SOCKET) and writes them to DIR/env, serves on an SVID that
// a client checking host names verifies against the bundle, lets the dev
// admin log in and refuses the non-admin; SIGTERM exits 0.
func TestDevMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	p := ftInProcess(t, "dev", "--dir", dir)

	testutil.WaitFor(t, 10*time.Second, "the export lines", func() bool {
		return strings.Contains(p.Stdout(), "# these lines are in ")
	})
	out := p.Stdout()
	exports := devExports(out)
	if len(exports) != 5 {
		t.Fatalf("%d exports, want 5:\n%s", len(exports), out)
	}
	if got := exports["TETHER_SERVER_ID"]; got != "spiffe://tether.test/tetherd" {
		t.Fatalf("TETHER_SERVER_ID=%s", got)
	}
	var ok bool
	if p.api, ok = strings.CutPrefix(exports["TETHER_SERVER"], "https://127.0.0.1:"); !ok {
		t.Fatalf("TETHER_SERVER=%s, want https://127.0.0.1:PORT", exports["TETHER_SERVER"])
	}
	p.api = "127.0.0.1:" + p.api
	// The CLI refuses a Workload API and files at once: the lines unset
	// the variable, before the exports, and say how to stop tetherd.
	unset, export := strings.Index(out, "\nunset SPIFFE_ENDPOINT_SOCKET\n"), strings.Index(out, "\nexport TETHER_")
	if unset < 0 || unset > export {
		t.Fatalf("no unset SPIFFE_ENDPOINT_SOCKET before the exports:\n%s", out)
	}
	if want := fmt.Sprintf("\nTETHERD_DEV_PID=%d ", os.Getpid()); !strings.Contains(out, want) {
		t.Fatalf("no %q line:\n%s", want, out)
	}
	for _, f := range []string{"bundle.pem", "admin.pem", "admin.key", "user.pem", "user.key", "env"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Fatalf("%s is %04o, want 0600", f, perm)
		}
	}
	if env, err := os.ReadFile(filepath.Join(dir, "env")); err != nil || string(env) != out {
		t.Fatalf("DIR/env is not what was printed (%v):\n%s", err, env)
	}

	// tetherd's SVID names 127.0.0.1: verified as any TLS server is,
	// against the bundle, as curl does.
	admin, err := x509svid.Load(exports["TETHER_SVID_CERT"], exports["TETHER_SVID_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool() // the bundle alone
	bundle, err := os.ReadFile(exports["TETHER_BUNDLE"])
	if err != nil || !roots.AppendCertsFromPEM(bundle) {
		t.Fatalf("the bundle: %v", err)
	}
	conn, err := tls.Dial("tcp", p.api, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots,
		Certificates: []tls.Certificate{testpki.TLSCertificate(admin)}})
	if err != nil {
		t.Fatalf("tetherd's SVID does not verify for 127.0.0.1 against the bundle: %v", err)
	}
	_ = conn.Close()

	login := func(cert, key string) (int, []byte) {
		t.Helper()
		s, err := x509svid.Load(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return p.call(p.apiClient(s), http.MethodPost, api.PathSessions, "")
	}
	status, body := login(exports["TETHER_SVID_CERT"], exports["TETHER_SVID_KEY"])
	if status != http.StatusCreated {
		t.Fatalf("the dev admin's login: %d %s", status, body)
	}
	var lr api.LoginResponse
	if err := json.Unmarshal(body, &lr); err != nil {
		t.Fatal(err)
	}
	if lr.Session.SPIFFEID != "spiffe://tether.test/admin/dev" {
		t.Fatalf("logged in as %s", lr.Session.SPIFFEID)
	}

	status, body = login(filepath.Join(dir, "user.pem"), filepath.Join(dir, "user.key"))
	if status != http.StatusForbidden || !strings.Contains(string(body), string(api.CodeNotAdmin)) {
		t.Fatalf("the non-admin's login: %d %s, want 403 %s", status, body, api.CodeNotAdmin)
	}

	p.signal(syscall.SIGTERM)
	if code := p.Exit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if log := p.Stderr(); !strings.Contains(log, "tetherd.stopped") || strings.Contains(log, lr.Token[:16]) {
		t.Fatalf("the log says no tetherd.stopped, or holds a token:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.pem")); err != nil {
		t.Fatalf("a --dir of the user's is left as it is: %v", err)
	}
}

// devExports are the TETHER_ variables that lines printed by dev export.
func devExports(out string) map[string]string {
	exports := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^export (TETHER_[A-Z_]+)=(\S+)$`).FindAllStringSubmatch(out, -1) {
		exports[m[1]] = m[2]
	}
	return exports
}

// TestDevDirRefused: `tetherd dev --dir` refuses, as a usage error naming
// --dir and before writing anything, a folder that others can write (they
// could replace the admin's key or the bundle tether trusts), that is not
// the user's, or that is a symbolic link.
func TestDevDirRefused(t *testing.T) {
	devFails := func(t *testing.T, dir string, want ...string) {
		t.Helper()
		p := ftInProcess(t, "dev", "--dir", dir)
		if code := p.Exit(t, 10*time.Second); code != 2 {
			t.Fatalf("exit %d, want 2 (usage)", code)
		}
		if out := p.Stdout(); out != "" {
			t.Fatalf("it printed %q", out)
		}
		line := p.Stderr()
		if !strings.HasPrefix(line, "tetherd: --dir: "+dir+" ") || strings.Count(line, "\n") != 1 {
			t.Fatalf("want one line naming --dir, got %q", line)
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Fatalf("%q does not say %q", line, w)
			}
		}
	}
	noFiles := func(t *testing.T, dir string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("%d files written in %s", len(entries), dir)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	for _, perm := range []os.FileMode{0o777, 0o770, 0o702, 0o1777} {
		dir := filepath.Join(t.TempDir(), "dev")
		must(os.Mkdir(dir, 0o700))
		must(os.Chmod(dir, perm))
		devFails(t, dir, "is writable by other users", "chmod 700 "+dir)
		noFiles(t, dir)
	}

	target := filepath.Join(t.TempDir(), "target")
	must(os.Mkdir(target, 0o700))
	link := filepath.Join(t.TempDir(), "link")
	must(os.Symlink(target, link))
	devFails(t, link, "is a symbolic link")
	noFiles(t, target)

	file := filepath.Join(t.TempDir(), "file")
	must(os.WriteFile(file, nil, 0o600))
	devFails(t, file, "is not a folder")

	// Not the user's: the owner it must have is a parameter, so that this
	// runs as any user; as root, a folder given away is refused end to end.
	mine := t.TempDir()
	err := devDir(mine, os.Getuid()+1)
	if code := cli.ExitCode(err); code != cli.ExitUsage {
		t.Fatalf("exit code %d for %v, want a usage error", code, err)
	}
	if want := fmt.Sprintf("--dir: %s belongs to uid %d, not to you (uid %d): give a folder of your own", mine, os.Getuid(), os.Getuid()+1); err.Error() != want {
		t.Fatalf("%q, want %q", err, want)
	}
	t.Run("foreign-owner", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to chown a folder to another user")
		}
		theirs := filepath.Join(t.TempDir(), "theirs")
		must(os.Mkdir(theirs, 0o700))
		must(os.Chown(theirs, 4242, -1))
		devFails(t, theirs, "belongs to uid 4242, not to you (uid 0)")
		noFiles(t, theirs)
	})

	// Accepted: the user's own folder that others cannot write, and a
	// missing one, made 0700 with its parents.
	for _, perm := range []os.FileMode{0o700, 0o750, 0o755} {
		dir := t.TempDir()
		must(os.Chmod(dir, perm))
		if err := devDir(dir, os.Getuid()); err != nil {
			t.Fatalf("%04o: %v", perm, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "a", "dev")
	must(devDir(missing, os.Getuid()))
	fi, err := os.Lstat(missing)
	must(err)
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("made %s %04o, want 0700", missing, perm)
	}
}

// devProcEnv is the environment of a child of the dev tests: the test's,
// without TETHER_ variables, with overrides (NAME=value). A Workload API
// is set, as on a SPIRE host: the lines dev prints must unset it.
func devProcEnv(overrides ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TETHER_") && !strings.HasPrefix(kv, "SPIFFE_ENDPOINT_SOCKET=") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return append(append(env, "SPIFFE_ENDPOINT_SOCKET=unix:///nonexistent/agent.sock"), overrides...)
}

// emptyDir fails t unless dir holds nothing.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s was left in %s", e.Name(), dir)
	}
}

// TestDevChecksFlagsFirst: a command line that dev refuses exits 2 with one
// line naming the flag, and writes nothing: neither the --dir it was given
// (missing, so it would be made) nor a temporary folder.
func TestDevChecksFlagsFirst(t *testing.T) {
	fileParent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(fileParent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"fail/svid-ttl-short", []string{"--svid-ttl", "1s"}, "--svid-ttl: 1s is not between 2s and 24h0m0s"},
		{"fail/svid-ttl-long", []string{"--svid-ttl", "25h"}, "--svid-ttl: 25h0m0s is not between"},
		{"fail/svid-ttl-bad", []string{"--svid-ttl", "soon"}, `invalid argument "soon" for "--svid-ttl"`},
		{"fail/listen-public", []string{"--listen", "0.0.0.0:0"}, "--listen: dev mode serves on loopback only"},
		{"fail/health-listen-public", []string{"--health-listen", "[::]:0"}, "--health-listen: dev mode serves on loopback only"},
		{"fail/session-ttl", []string{"--session-ttl", "0s"}, "--session-ttl: must be positive"},
		{"fail/log-format", []string{"--log-format", "xml"}, "--log-format"},
		{"fail/admin-pattern", []string{"--admin", "spiffe://tether.test/a*"}, "--admin"},
		{"fail/identity", []string{"--svid-cert", "svid.pem"}, "dev mode makes its own identity"},
		{"fail/unknown-flag", []string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{"fail/dir-under-file", []string{"--dir", filepath.Join(fileParent, "dev")}, "--dir: "},
		{"fail/dir-control-character", []string{"--dir", "DIR/a\nb"}, "has a control character in its name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmp, dir := t.TempDir(), filepath.Join(t.TempDir(), "dev")
			args := []string{"dev", "--dir", dir, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "DIR", dir))
			}
			p := testproc.Exec(t, testproc.Config{Path: tetherdBinary, Args: args, Env: devProcEnv("TMPDIR=" + tmp)}, 30*time.Second)
			if code := p.ExitCode(); code != 2 {
				t.Fatalf("exit %d, want 2\n%s", code, p.Report())
			}
			if line := p.Stderr(); !strings.HasPrefix(line, "tetherd: ") || strings.Count(line, "\n") != 1 || !strings.Contains(line, tt.want) {
				t.Fatalf("want one line saying %q, got %q", tt.want, line)
			}
			if out := p.Stdout(); out != "" {
				t.Fatalf("it printed %q", out)
			}
			if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("--dir %s was made (%v)", dir, err)
			}
			emptyDir(t, tmp)
		})
	}
}

// TestDevTempFolderRemoved: the folder dev made itself (no --dir) is gone
// once it has stopped on SIGTERM or SIGINT, or failed to serve.
func TestDevTempFolderRemoved(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			p := testproc.StartT(t, testproc.Config{Path: tetherdBinary, Env: devProcEnv("TMPDIR=" + tmp),
				Args: []string{"dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"}})
			testutil.WaitFor(t, 20*time.Second, "the export lines", func() bool {
				return strings.Contains(p.Stdout(), "# these lines are in ") || p.Exited()
			})
			bundle := devExports(p.Stdout())["TETHER_BUNDLE"]
			dir := filepath.Dir(bundle)
			if filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), "tether-dev-") {
				t.Fatalf("the files are in %q, want a tether-dev-* folder in $TMPDIR %s\n%s", dir, tmp, p.Report())
			}
			if _, err := os.Stat(bundle); err != nil {
				t.Fatal(err)
			}
			if err := p.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := p.Exit(t, 15*time.Second); code != 0 {
				t.Fatalf("exit %d after %v\n%s", code, sig, p.Report())
			}
			emptyDir(t, tmp)
		})
	}
	t.Run("failed-to-serve", func(t *testing.T) {
		t.Parallel()
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		tmp := t.TempDir()
		p := testproc.Exec(t, testproc.Config{Path: tetherdBinary, Env: devProcEnv("TMPDIR=" + tmp),
			Args: []string{"dev", "--listen", taken.Addr().String(), "--health-listen", "127.0.0.1:0"}}, 30*time.Second)
		if code := p.ExitCode(); code != 1 || !strings.Contains(p.Stderr(), "--listen") {
			t.Fatalf("exit %d, want 1 naming --listen\n%s", code, p.Report())
		}
		emptyDir(t, tmp)
	})
}

// TestShellQuote: the paths in the lines dev prints are one shell word each,
// whatever their characters, as sh reads them back.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"/tmp/tether-dev/admin.pem", "https://127.0.0.1:8443", "my dev", "it's", `$(id)`, "`id`", `a"b\c`, "*", "é", "~", ""} {
		q := shellQuote(s)
		p := testproc.Exec(t, testproc.Config{Path: "sh", Args: []string{"-c", "printf %s " + q}}, 30*time.Second)
		if p.ExitCode() != 0 || p.Stdout() != s {
			t.Fatalf("%q quoted %s reads back as %q\n%s", s, q, p.Stdout(), p.Report())
		}
	}
	if q := shellQuote("/tmp/tether-dev/admin.pem"); q != "/tmp/tether-dev/admin.pem" {
		t.Fatalf("a plain path is quoted: %s", q)
	}
}
