package main

// The dev hand-off as a newcomer meets it: the commands of `tetherd dev
// --help` and of the README's Quick start run in a shell, with the real
// tetherd and tether binaries, against a tetherd that re-issues its SVIDs.

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/svid"
)

// devTether is the tether CLI, built once, next to tetherdBinary.
var devTether struct {
	once sync.Once
	path string
	err  error
}

func tetherBinary(t *testing.T) string {
	t.Helper()
	devTether.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		dir := filepath.Dir(tetherdBinary)
		devTether.path, devTether.err = filepath.Join(dir, "tether"), testproc.Build(ctx, dir, false, "../tether")
	})
	if devTether.err != nil {
		t.Fatal(devTether.err)
	}
	return devTether.path
}

// devPath is a folder for the front of $PATH in which `tether` is the CLI
// and `tetherd` is tetherd serving on free ports (the documented commands
// use the default ones, which another program may hold), so that the
// commands run as documented. tetherd is exec'ed: its PID is the one it
// prints.
func devPath(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	wrapper := "#!/bin/sh\nexec '" + tetherdBinary + "' \"$@\" --listen 127.0.0.1:0 --health-listen 127.0.0.1:0\n"
	if err := os.WriteFile(filepath.Join(bin, "tetherd"), []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tetherBinary(t), filepath.Join(bin, "tether")); err != nil {
		t.Fatal(err)
	}
	return bin + string(os.PathListSeparator) + os.Getenv("PATH")
}

// devShellEnv is the environment of a shell running the documented
// commands: devPath first in $PATH, a token cache of the test's, and a
// Workload API set, as on a SPIRE host.
func devShellEnv(t *testing.T, overrides ...string) []string {
	t.Helper()
	return devProcEnv(append([]string{"PATH=" + devPath(t), "TETHER_CACHE_DIR=" + t.TempDir()}, overrides...)...)
}

// devExample is `tetherd dev --help`'s Example: the commands of one
// terminal and of another (split at the comment "# in another"), and the
// script, each without comments and blank lines.
func devExample(t *testing.T) (serve string, client, script []string) {
	t.Helper()
	var part int
	for line := range strings.Lines(newDevCmd(&options{}).Example) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# in another"), strings.HasPrefix(line, "# or, in a script"):
			part++
		case line == "" || strings.HasPrefix(line, "#"):
		case part == 0 && serve == "":
			serve = line
		case part == 1:
			client = append(client, line)
		case part == 2:
			script = append(script, line)
		}
	}
	if serve == "" || len(client) == 0 || len(script) == 0 {
		t.Fatalf("the Example is not two terminals and a script:\n%s", newDevCmd(&options{}).Example)
	}
	return serve, client, script
}

// TestDevHandOffExample runs the Example of `tetherd dev --help` in sh, as
// written there: in one shell tetherd dev --dir, in another the env file
// sourced and the CLI; then the script form, eval "$(tetherd dev &)", which
// returns once the lines are printed (dev closes its output), logs in, and
// kills tetherd, whose temporary folder then goes. SPIFFE_ENDPOINT_SOCKET is
// set in both: the lines dev prints unset it.
func TestDevHandOffExample(t *testing.T) {
	serve, client, script := devExample(t)

	t.Run("two-terminals", func(t *testing.T) {
		t.Parallel()
		const documented = "/tmp/tether-dev"
		dir := filepath.Join(t.TempDir(), "dev")
		env := devShellEnv(t)
		if !strings.Contains(serve, documented) {
			t.Fatalf("%q does not use %s", serve, documented)
		}
		p := testproc.StartT(t, testproc.Config{Name: "tetherd dev", Path: "sh", Env: env,
			Args: []string{"-c", "exec " + strings.ReplaceAll(serve, documented, dir)}})
		envFile := filepath.Join(dir, "env")
		testutil.WaitFor(t, 20*time.Second, envFile, func() bool {
			_, err := os.Stat(envFile)
			return err == nil || p.Exited()
		})
		steps := strings.ReplaceAll(strings.Join(append([]string{"set -e"}, client...), "\n"), documented, dir)
		sh := testproc.Exec(t, testproc.Config{Name: "the other terminal", Path: "sh", Args: []string{"-c", steps}, Env: env}, time.Minute)
		if sh.ExitCode() != 0 || !strings.Contains(sh.Stdout(), "Session:") {
			t.Fatalf("%s\n%s\n%s", steps, sh.Report(), p.Report())
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.Exit(t, 15*time.Second); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.Report())
		}
		if _, err := os.Stat(filepath.Join(dir, "admin.pem")); err != nil {
			t.Fatalf("the --dir given is left as it is: %v", err)
		}
	})

	t.Run("script", func(t *testing.T) {
		t.Parallel()
		tmp := t.TempDir()
		lines := strings.Join(append([]string{"set -e"}, script...), "\n")
		if !strings.HasPrefix(script[0], `eval "$(tetherd dev`) || !strings.HasSuffix(script[0], ` &)"`) {
			t.Fatalf("the script does not start with eval \"$(tetherd dev ... &)\": %q", script[0])
		}
		sh, err := testproc.Start(testproc.Config{Name: "the script", Path: "sh", Args: []string{"-c", lines}, Env: devShellEnv(t, "TMPDIR="+tmp)})
		if err != nil {
			t.Fatal(err)
		}
		// tetherd runs in the background of sh, in its process group: end
		// it however the test ends.
		t.Cleanup(func() { _ = syscall.Kill(-sh.PID(), syscall.SIGKILL) })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if code, err := sh.WaitExit(ctx); err != nil || code != 0 {
			t.Fatalf("%v (a hang is the eval waiting for tetherd's output to end)\n%s\n%s", err, lines, sh.Report())
		}
		if !strings.Contains(sh.Stdout(), "Logged in to https://127.0.0.1:") {
			t.Fatalf("no login:\n%s", sh.Report())
		}
		// Killed, tetherd removes the folder it made in $TMPDIR.
		testutil.WaitFor(t, 15*time.Second, "tetherd to remove its folder in $TMPDIR", func() bool {
			entries, err := os.ReadDir(tmp)
			return err == nil && len(entries) == 0
		})
	})
}

// devCLI runs the tether CLI with args and the lines of envFile sourced, as
// a user of dev does, and returns the session it printed (-o json).
func devCLI(t *testing.T, env []string, envFile string, args ...string) api.Session {
	t.Helper()
	args = append([]string{"-c", `. "$1"; shift; exec "$@"`, "sh", envFile, tetherBinary(t)}, append(args, "-o", "json")...)
	p := testproc.Exec(t, testproc.Config{Name: "tether", Path: "sh", Args: args, Env: env}, time.Minute)
	var out struct{ Session api.Session }
	if err := json.Unmarshal([]byte(p.Stdout()), &out); p.ExitCode() != 0 || err != nil {
		t.Fatalf("tether %v: %v\n%s", args[5:], err, p.Report())
	}
	return out.Session
}

// adminRotations are the fingerprints of the admin SVIDs tetherd dev
// logged it re-issued, in order.
func adminRotations(p *ftProc) []string {
	var fps []string
	for _, ev := range p.Events("dev.svid_rotated") {
		if ev["spiffe_id"] == devAdminID {
			fp, _ := ev["fingerprint"].(string)
			fps = append(fps, fp)
		}
	}
	return fps
}

// waitRotation waits for the admin SVID re-issued after the n-th and returns
// all the fingerprints logged so far.
func waitRotation(t *testing.T, p *ftProc, n int) []string {
	t.Helper()
	var fps []string
	testutil.WaitFor(t, 20*time.Second, "dev to re-issue the admin SVID", func() bool {
		fps = adminRotations(p)
		return len(fps) > n || p.Exited()
	})
	if len(fps) <= n {
		t.Fatalf("tetherd exited\n%s", p.Report())
	}
	return fps
}

// TestDevSVIDRotation: with --svid-ttl, dev re-issues the admin SVID at
// half-life into the same files (still 0600, a new leaf of the same ID that
// chains to the bundle), and the CLI's next command rebinds its session to
// it: the same session ID, the new leaf's fingerprint; tetherd logs
// session.rebound from the old fingerprint.
func TestDevSVIDRotation(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	p := ftServe(t, "dev", "--dir", dir, "--svid-ttl", "10s")
	envFile := filepath.Join(dir, "env")
	testutil.WaitFor(t, 10*time.Second, envFile, func() bool { _, err := os.Stat(envFile); return err == nil })
	env := devProcEnv("TETHER_CACHE_DIR=" + t.TempDir())

	login := devCLI(t, env, envFile, "login")
	before := adminRotations(p)
	fps := waitRotation(t, p, len(before))
	certFile := filepath.Join(dir, "admin.pem")
	s, err := x509svid.Load(certFile, filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fp := svid.Fingerprint(s.Certificates[0]); fp == login.CNF.X5TS256 || s.ID.String() != devAdminID {
		t.Fatalf("admin.pem holds %s %s after the re-issue; logged in with %s", s.ID, fp, login.CNF.X5TS256)
	}
	for _, f := range []string{"admin.pem", "admin.key"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s after the re-issue: %v %v", f, fi.Mode(), err)
		}
	}

	who := devCLI(t, env, envFile, "whoami")
	if who.SessionID != login.SessionID {
		t.Fatalf("whoami shows session %s, logged in as %s: the session did not survive the rotation", who.SessionID, login.SessionID)
	}
	if who.CNF.X5TS256 == login.CNF.X5TS256 || !strings.Contains(strings.Join(adminRotations(p), " "), who.CNF.X5TS256) {
		t.Fatalf("whoami shows the session bound to %s; logged in with %s, re-issued %v", who.CNF.X5TS256, login.CNF.X5TS256, fps)
	}
	var rebound bool
	for _, ev := range p.Events("session.rebound") {
		rebound = rebound || (ev["session_id"] == login.SessionID && ev["previous_fingerprint"] == login.CNF.X5TS256)
	}
	if !rebound {
		t.Fatalf("no session.rebound from %s\n%s", login.CNF.X5TS256, p.Report())
	}
	p.sigterm()
}

// TestDevCurlRecipe runs the README's curl recipe (its Quick start) in one
// sh, against tetherd dev re-issuing its SVIDs: log in and read the session
// over the admin SVID, verifying tetherd against the bundle with no -k;
// once the SVID is re-issued, the same token is certificate_rotated, the
// rebind gives the same session a new token, and logout answers 204.
func TestDevCurlRecipe(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the recipe needs %s, which is not installed: %v", tool, err)
		}
	}
	before, after := readmeCurlRecipe(t)
	dir := filepath.Join(t.TempDir(), "dev")
	p := ftServe(t, "dev", "--dir", dir, "--svid-ttl", "10s")
	envFile := filepath.Join(dir, "env")
	testutil.WaitFor(t, 10*time.Second, envFile, func() bool { _, err := os.Stat(envFile); return err == nil })

	// One shell, fed line by line, keeps the token between the parts.
	stdin, feed := io.Pipe()
	sh := testproc.StartT(t, testproc.Config{Name: "sh (recipe)", Path: "sh", Stdin: stdin, Env: devProcEnv()})
	t.Cleanup(func() { _ = feed.Close() })
	run := func(lines, done string) string {
		t.Helper()
		start := len(sh.Stdout())
		if _, err := io.WriteString(feed, strings.ReplaceAll(lines, "/tmp/tether-dev", dir)+"\necho "+done+"\n"); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, done, func() bool { return strings.Contains(sh.Stdout()[start:], done+"\n") || sh.Exited() })
		out := sh.Stdout()[start:]
		if !strings.Contains(out, done+"\n") {
			t.Fatalf("the shell exited\n%s", sh.Report())
		}
		return out
	}

	// The first part runs well within the first half-life (5s), even on a loaded machine.
	n := len(adminRotations(p))
	out := run(before, "==logged-in==")
	var self api.SessionResponse
	if err := json.Unmarshal([]byte(strings.TrimSuffix(out, "==logged-in==\n")), &self); err != nil || self.Session.SPIFFEID != devAdminID {
		t.Fatalf("GET /v1/sessions/self: %v (%d re-issues during it)\n%s\n%s", err, len(adminRotations(p))-n, out, sh.Report())
	}

	waitRotation(t, p, n)
	out = run(after, "==rebound==")
	lines := strings.Split(strings.TrimSuffix(out, "\n==rebound==\n"), "\n")
	var rebound api.SessionResponse
	if len(lines) != 3 || !strings.Contains(lines[0], `"code":"`+string(api.CodeCertificateRotated)+`"`) ||
		json.Unmarshal([]byte(lines[1]), &rebound) != nil || lines[2] != "204" ||
		rebound.Session.SessionID != self.Session.SessionID || rebound.Session.CNF.X5TS256 == self.Session.CNF.X5TS256 {
		t.Fatalf("after the re-issue: want certificate_rotated, the same session bound to a new leaf, 204; got\n%s\n%s", out, sh.Report())
	}
	_ = feed.Close()
	if code := sh.Exit(t, 10*time.Second); code != 0 {
		t.Fatalf("sh exited %d\n%s", code, sh.Report())
	}
	p.sigterm()
}

// readmeCurlRecipe is the curl recipe of README.md: the sh block that
// defines api(), and the one after it, for once the SVID is re-issued.
func readmeCurlRecipe(t *testing.T) (before, after string) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	rest := string(readme)
	for {
		_, block, ok := strings.Cut(rest, "```sh\n")
		if !ok {
			break
		}
		block, rest, _ = strings.Cut(block, "```\n")
		blocks = append(blocks, block)
	}
	for i, b := range blocks {
		if strings.Contains(b, "api() { curl") && i+1 < len(blocks) {
			return b, blocks[i+1]
		}
	}
	t.Fatal("README.md has no curl recipe: a sh block defining api() { curl ...; }, followed by another")
	return "", ""
}
