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
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	require.NoError(t, err)

	items, err := readSettingsFile(exampleHCL)
	require.NoError(t, err)
	require.NotEmpty(t, items)
	var args []string
	for _, it := range items {
		for _, v := range it.values {
			args = append(args, "--"+strings.ReplaceAll(it.key, "_", "-"), v)
		}
	}
	byFlags, _ := settingsCmd(t, args...)
	for _, it := range items {
		name := strings.ReplaceAll(it.key, "_", "-")
		assert.Equal(t, fromFile, st.from[name], it.key)
		assert.Equal(t, byFlags.Flags().Lookup(name).Value.String(), cmd.Flags().Lookup(name).Value.String(), it.key)
	}
	var unset []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Changed && !notSettings[f.Name] {
			unset = append(unset, f.Name)
		}
	})
	t.Logf("flags the example leaves at their defaults: %v", unset)

	assert.Equal(t, "unix:///tmp/spire-agent/public/api.sock", o.workloadAPI, "the SPIRE agent's default socket_path")
	assert.Equal(t, "spiffe://example.org/tetherd", o.spiffeID)
	assert.Equal(t, []string{"spiffe://example.org/admin/*"}, o.admins)
	assert.Equal(t, "127.0.0.1:8080", o.healthListen, "health and metrics stay local")
	assert.Equal(t, 8*time.Hour, o.sessionTTL)
}

// TestExampleSettingsFileServes: tetherd --config examples/tetherd.hcl
// serves, with the identity source and ports overridden by flags (a fake
// Workload API handing out the example's SPIFFE ID), and logs where each
// setting came from.
func TestExampleSettingsFileServes(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	fw := opFake(t)
	require.NoError(t, fw.SetSVIDs(ca.Bundle(), ca.Issue(t, opOtherID), ca.Issue(t, "spiffe://example.org/tetherd")))
	p := opStart(t, opEnv("TETHERD_CONFIG="+exampleHCL), "--workload-api", fw.Addr())
	ev := p.started()
	assert.Equal(t, "spiffe://example.org/tetherd", ev["spiffe_id"])
	assert.Equal(t, []any{"spiffe://example.org/admin/*"}, ev["admins"])
	assert.Equal(t, []any{"spiffe://example.org/gateway"}, ev["introspectors"])
	p.HTTP(t, p.url("/readyz"), http.StatusOK, 10*time.Second)

	conf := p.Event(t, "tetherd.config", 1, time.Second)
	assert.Equal(t, exampleHCL, conf["config_file"])
	settings, _ := conf["settings"].(map[string]any)
	for key, from := range map[string]string{
		"spiffe_id": fromFile, "admin": fromFile, "session_ttl": fromFile, "log_format": fromFlag,
		"workload_api": fromFlag, "listen": fromFlag, "log_level": fromFlag,
	} {
		s, _ := settings[key].(map[string]any)
		assert.Equal(t, from, s["from"], key)
	}
	p.stop()
}

// TestExampleSystemdUnit: examples/tetherd.service passes systemd-analyze
// verify without a warning (its ExecStart pointed at the tetherd built for
// these tests), and starts tetherd with the example settings file's path.
func TestExampleSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(exampleService)
	require.NoError(t, err)
	text := string(unit)
	require.Contains(t, text, "ExecStart=/usr/local/bin/tetherd --config /etc/tetherd/tetherd.hcl\n")
	for _, want := range []string{"User=tetherd", "NoNewPrivileges=yes", "ProtectSystem=strict", "RestartPreventExitStatus=2"} {
		assert.Contains(t, text, want+"\n")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd): the unit file is not verified")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tetherd.service")
	text = strings.Replace(text, "ExecStart=/usr/local/bin/tetherd ", "ExecStart="+tetherdBinary+" ", 1)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	p := testproc.Exec(t, testproc.Config{Path: analyze, Args: []string{"verify", path}, Dir: dir}, 60*time.Second)
	require.Equal(t, 0, p.ExitCode(), p.Report())
	assert.Empty(t, strings.TrimSpace(p.Stdout()+p.Stderr()), "systemd-analyze verify has something to say")
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
		require.Equal(t, 0, p.ExitCode(), p.Report())
		return p.Stdout()
	}
	check := func(version string) {
		t.Helper()
		for _, cmd := range []string{"tetherd", "tether"} {
			bin := filepath.Join(dist, cmd+"-"+version+"-"+runtime.GOOS+"-"+runtime.GOARCH)
			flag := testproc.Exec(t, testproc.Config{Path: bin, Args: []string{"--version"}, Env: opEnv()}, time.Minute)
			sub := testproc.Exec(t, testproc.Config{Path: bin, Args: []string{"version"}, Env: opEnv()}, time.Minute)
			require.Equal(t, 0, flag.ExitCode(), flag.Report())
			assert.Equal(t, sub.Stdout(), flag.Stdout(), cmd)
			assert.True(t, strings.HasPrefix(flag.Stdout(), cmd+" "+version+"\n") || strings.HasPrefix(flag.Stdout(), cmd+" "+version+" ("),
				"%s --version: %q", cmd, flag.Stdout())
		}
	}

	out := build("VERSION=v0.0.0-buildtest")
	assert.Contains(t, out, "tetherd-v0.0.0-buildtest-"+runtime.GOOS+"-"+runtime.GOARCH)
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
	require.NoError(t, err)
	defer f.Close()
	entries, _ := filepath.Glob(filepath.Join(dist, "tether*-*"))
	sums := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		require.True(t, ok, sc.Text())
		b, err := os.ReadFile(filepath.Join(dist, name))
		require.NoError(t, err)
		got := sha256.Sum256(b)
		assert.Equal(t, hex.EncodeToString(got[:]), sum, name)
		sums++
	}
	assert.Equal(t, len(entries), sums, "one sum per binary: %v", entries)
}
