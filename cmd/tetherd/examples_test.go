package main

// The deployment examples in examples/ are checked: the settings file says
// what tetherd then runs with, and serves; the systemd unit passes
// systemd-analyze verify. So is scripts/build.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/internal/testproc"
)

const (
	exampleHCL     = "../../examples/tetherd.hcl"
	exampleService = "../../examples/tetherd.service"
)

// TestExampleSettingsFile: every key of examples/tetherd.hcl gives its flag
// the value the same setting gives on the command line, and the file says
// what the README and the unit promise.
func TestExampleSettingsFile(t *testing.T) {
	cmd, o := settingsCmd(t, "--config", exampleHCL)
	st, err := loadSettings(cmd.Flags(), nil)
	if err != nil {
		t.Fatal(err)
	}

	items, err := readSettingsFile(exampleHCL)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) == 0 {
		t.Fatalf("items: empty")
	}
	var args []string
	for _, it := range items {
		for _, v := range it.values {
			args = append(args, "--"+strings.ReplaceAll(it.key, "_", "-"), v)
		}
	}
	byFlags, _ := settingsCmd(t, args...)
	for _, it := range items {
		name := strings.ReplaceAll(it.key, "_", "-")
		if got, want := st.from[name], fromFile; !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: got %v, want %v", it.key, got, want)
		}
		if got, want := cmd.Flags().Lookup(name).Value.String(), byFlags.Flags().Lookup(name).Value.String(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: got %v, want %v", it.key, got, want)
		}
	}
	var unset []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Changed && !notSettings[f.Name] {
			unset = append(unset, f.Name)
		}
	})
	t.Logf("flags the example leaves at their defaults: %v", unset)

	if got, want := o.workloadAPI, "unix:///tmp/spire-agent/public/api.sock"; !reflect.DeepEqual(got, want) {
		t.Fatalf("the SPIRE agent's default socket_path: got %v, want %v", got, want)
	}
	if got, want := o.spiffeID, "spiffe://example.org/tetherd"; !reflect.DeepEqual(got, want) {
		t.Fatalf("o.spiffeID: got %v, want %v", got, want)
	}
	if got, want := o.admins, []string{"spiffe://example.org/admin/*"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("o.admins: got %v, want %v", got, want)
	}
	if got, want := o.healthListen, "127.0.0.1:8080"; !reflect.DeepEqual(got, want) {
		t.Fatalf("health and metrics stay local: got %v, want %v", got, want)
	}
	if got, want := o.sessionTTL, 8*time.Hour; !reflect.DeepEqual(got, want) {
		t.Fatalf("o.sessionTTL: got %v, want %v", got, want)
	}
}

// TestExampleSettingsFileServes: tetherd --config examples/tetherd.hcl
// serves, with the identity source and ports overridden by flags (a fake
// Workload API handing out the example's SPIFFE ID), and logs where each
// setting came from.
func TestExampleSettingsFileServes(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := ftFake(t, ca, ca.Issue(t, opOtherID), ca.Issue(t, "spiffe://example.org/tetherd"))
	p := ftStartEnv(t, opEnv("TETHERD_CONFIG="+exampleHCL), "--workload-api", fw.Addr())
	ev := p.serving()
	if got, want := ev["spiffe_id"], "spiffe://example.org/tetherd"; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev[\"spiffe_id\"]: got %v, want %v", got, want)
	}
	if got, want := ev["admins"], []any{"spiffe://example.org/admin/*"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev[\"admins\"]: got %v, want %v", got, want)
	}
	if got, want := ev["introspectors"], []any{"spiffe://example.org/gateway"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev[\"introspectors\"]: got %v, want %v", got, want)
	}
	p.waitReady(http.StatusOK, 10*time.Second)

	conf := p.Event(t, "tetherd.config", 1, time.Second)
	if got, want := conf["config_file"], exampleHCL; !reflect.DeepEqual(got, want) {
		t.Fatalf("conf[\"config_file\"]: got %v, want %v", got, want)
	}
	settings, _ := conf["settings"].(map[string]any)
	for key, from := range map[string]string{
		"spiffe_id": fromFile, "admin": fromFile, "session_ttl": fromFile, "log_format": fromFlag,
		"workload_api": fromFlag, "listen": fromFlag, "log_level": fromFlag,
	} {
		s, _ := settings[key].(map[string]any)
		if got, want := s["from"], from; !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: got %v, want %v", key, got, want)
		}
	}
	p.sigterm()
}

// TestExampleSystemdUnit: examples/tetherd.service passes systemd-analyze
// verify without a warning (its ExecStart pointed at the tetherd built for
// these tests), and starts tetherd with the example settings file's path.
func TestExampleSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(exampleService)
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	if !strings.Contains(text, "ExecStart=/usr/local/bin/tetherd --config /etc/tetherd/tetherd.hcl\n") {
		t.Fatalf("%q does not contain %q", text, "ExecStart=/usr/local/bin/tetherd --config /etc/tetherd/tetherd.hcl\n")
	}
	for _, want := range []string{"User=tetherd", "NoNewPrivileges=yes", "ProtectSystem=strict", "RestartPreventExitStatus=2"} {
		if !strings.Contains(text, want+"\n") {
			t.Fatalf("%q does not contain %q", text, want+"\n")
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd): the unit file is not verified")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tetherd.service")
	text = strings.Replace(text, "ExecStart=/usr/local/bin/tetherd ", "ExecStart="+tetherdBinary+" ", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testproc.Exec(t, testproc.Config{Path: analyze, Args: []string{"verify", path}, Dir: dir}, 60*time.Second)
	if got, want := p.ExitCode(), 0; !reflect.DeepEqual(got, want) {
		t.Fatalf("%v: got %v, want %v", p.Report(), got, want)
	}
	if v := strings.TrimSpace(p.Stdout() + p.Stderr()); len(v) != 0 {
		t.Fatalf("systemd-analyze verify has something to say: %v, want empty", v)
	}
}

// TestBuildScript: scripts/build writes both binaries, named with the
// version and platform, stamped with the version (--version = version),
// and their SHA-256 sums.
func TestBuildScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries twice")
	}
	dist := t.TempDir()
	build := func(env ...string) string {
		t.Helper()
		p := testproc.Exec(t, testproc.Config{
			Path: "../../scripts/build",
			Env:  append(os.Environ(), append(env, "DIST_DIR="+dist)...),
		}, 8*time.Minute)
		if got, want := p.ExitCode(), 0; !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: got %v, want %v", p.Report(), got, want)
		}
		return p.Stdout()
	}
	check := func(version string) {
		t.Helper()
		for _, cmd := range []string{"tetherd", "tether"} {
			bin := filepath.Join(dist, cmd+"-"+version+"-"+runtime.GOOS+"-"+runtime.GOARCH)
			flag := testproc.Exec(t, testproc.Config{Path: bin, Args: []string{"--version"}, Env: opEnv()}, time.Minute)
			sub := testproc.Exec(t, testproc.Config{Path: bin, Args: []string{"version"}, Env: opEnv()}, time.Minute)
			if got, want := flag.ExitCode(), 0; !reflect.DeepEqual(got, want) {
				t.Fatalf("%v: got %v, want %v", flag.Report(), got, want)
			}
			if got, want := flag.Stdout(), sub.Stdout(); !reflect.DeepEqual(got, want) {
				t.Fatalf("%v: got %v, want %v", cmd, got, want)
			}
			if !strings.HasPrefix(flag.Stdout(), cmd+" "+version+"\n") && !strings.HasPrefix(flag.Stdout(), cmd+" "+version+" (") {
				t.Fatalf("%s --version: %q", cmd, flag.Stdout())
			}
		}
	}

	out := build("VERSION=v0.0.0-buildtest")
	if !strings.Contains(out, "tetherd-v0.0.0-buildtest-"+runtime.GOOS+"-"+runtime.GOARCH) {
		t.Fatalf("%q does not contain %q", out, "tetherd-v0.0.0-buildtest-"+runtime.GOOS+"-"+runtime.GOARCH)
	}
	check("v0.0.0-buildtest")

	// The version of the checkout, as git describes it.
	if git, err := exec.LookPath("git"); err == nil {
		d := testproc.Exec(t, testproc.Config{Path: git, Args: []string{"describe", "--tags", "--always", "--dirty"}}, time.Minute)
		if v := strings.TrimSpace(d.Stdout()); d.ExitCode() == 0 && v != "" {
			build()
			check(v)
		}
	}

	// SHA256SUMS covers every binary in the folder, and is right.
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, _ := filepath.Glob(filepath.Join(dist, "tether*-*"))
	sums := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !(ok) {
			t.Fatalf("%v: false", sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if got, want := sum, hex.EncodeToString(got[:]); !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: got %v, want %v", name, got, want)
		}
		sums++
	}
	if got, want := sums, len(entries); !reflect.DeepEqual(got, want) {
		t.Fatalf("one sum per binary: %v: got %v, want %v", entries, got, want)
	}
}
