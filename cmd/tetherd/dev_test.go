package main

import (
	"encoding/json"
	"fmt"
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
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
)

// TestDevMode runs `tetherd dev` in-process: it writes the bundle and two
// SVIDs, prints exports that point at its listener, lets the dev admin log
// in and refuses the non-admin; cancelling it (as SIGTERM would) exits 0.
func TestDevMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	p := ftInProcess(t, "dev", "--dir", dir)

	exports := map[string]string{}
	re := regexp.MustCompile(`(?m)^export (TETHER_[A-Z_]+)=(\S+)$`)
	testutil.WaitFor(t, 10*time.Second, "the export lines", func() bool {
		for _, m := range re.FindAllStringSubmatch(p.Stdout(), -1) {
			exports[m[1]] = m[2]
		}
		return len(exports) == 5
	})
	if got := exports["TETHER_SERVER_ID"]; got != "spiffe://tether.test/tetherd" {
		t.Fatalf("TETHER_SERVER_ID=%s", got)
	}
	var ok bool
	if p.api, ok = strings.CutPrefix(exports["TETHER_SERVER"], "https://127.0.0.1:"); !ok {
		t.Fatalf("TETHER_SERVER=%s, want https://127.0.0.1:PORT", exports["TETHER_SERVER"])
	}
	p.api = "127.0.0.1:" + p.api
	for _, f := range []string{"bundle.pem", "admin.pem", "admin.key", "user.pem", "user.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}

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
