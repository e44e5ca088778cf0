package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherproject/tether/internal/testpki"
)

// TestConfigErrors: bad configuration exits 2 with one line naming the flag,
// before anything is served.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, dir, "svid", ca.Issue(t, "spiffe://example.org/tetherd"))
	other := testpki.NewCA(t, "example.org").WriteFiles(t, t.TempDir(), "other", ca.Issue(t, "spiffe://example.org/x"))
	id := []string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle}
	admin := []string{"--admin", "spiffe://example.org/admin/*"}
	garbage := writeFile(t, "garbage.pem", "this is not a PEM file\n")
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"fail/no-admin", id, "--admin"},
		{"fail/bad-admin", append(append([]string{}, id...), "--admin", "spiffe://example.org/adm*"), "--admin"},
		{"fail/admin-trust-domain-only", append(append([]string{}, id...), "--admin", "spiffe://example.org"), "--admin"},
		{"fail/bad-introspector", append(append(append([]string{}, id...), admin...), "--introspector", "nope"), "--introspector"},
		{"fail/no-identity", admin, "--workload-api"},
		{"fail/two-identities", append(append(append([]string{}, id...), admin...), "--workload-api", "unix:///tmp/x.sock"), "exactly one identity source"},
		{"fail/partial-files", append([]string{"--svid-cert", files.Cert}, admin...), "--svid-key"},
		{"fail/bad-workload-api", append([]string{"--workload-api", "/tmp/x.sock"}, admin...), "--workload-api"},
		// What go-spiffe's client would refuse only at the dial (exit 1).
		{"fail/workload-api-tcp-name", append([]string{"--workload-api", "tcp://localhost:1234"}, admin...), `--workload-api: "tcp://localhost:1234" is not unix:///path or tcp://ip:port: `},
		{"fail/workload-api-tcp-no-port", append([]string{"--workload-api", "tcp://127.0.0.1"}, admin...), `--workload-api: "tcp://127.0.0.1" is not`},
		{"fail/workload-api-tcp-bad-port", append([]string{"--workload-api", "tcp://127.0.0.1:abc"}, admin...), `--workload-api: "tcp://127.0.0.1:abc" is not`},
		{"fail/workload-api-tcp-path", append([]string{"--workload-api", "tcp://127.0.0.1:1/path"}, admin...), `--workload-api: "tcp://127.0.0.1:1/path" is not`},
		{"fail/workload-api-unix-host", append([]string{"--workload-api", "unix://host/path"}, admin...), `--workload-api: "unix://host/path" is not`},
		{"fail/workload-api-unix-query", append([]string{"--workload-api", "unix:///tmp/x.sock?a=b"}, admin...), `--workload-api: "unix:///tmp/x.sock?a=b" is not`},
		{"fail/workload-api-unix-relative", append([]string{"--workload-api", "unix:relative.sock"}, admin...), `--workload-api: "unix:relative.sock" is not`},
		{"fail/workload-api-http", append([]string{"--workload-api", "http://x"}, admin...), `--workload-api: "http://x" is not`},
		// Each identity file's fault names its own flag, first.
		{"fail/unreadable-cert", append([]string{"--svid-cert", dir + "/missing.pem", "--svid-key", files.Key, "--bundle", files.Bundle}, admin...), "tetherd: --svid-cert: "},
		{"fail/unreadable-key", append([]string{"--svid-cert", files.Cert, "--svid-key", dir + "/missing.key", "--bundle", files.Bundle}, admin...), "tetherd: --svid-key: "},
		{"fail/garbage-key", append([]string{"--svid-cert", files.Cert, "--svid-key", garbage, "--bundle", files.Bundle}, admin...), "tetherd: --svid-key: "},
		{"fail/unreadable-bundle", append([]string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", dir + "/missing-bundle.pem"}, admin...), "tetherd: --bundle: "},
		{"fail/garbage-bundle", append([]string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", garbage}, admin...), "tetherd: --bundle: "},
		// A file that never ends (a device) is refused at a bound, not read
		// until memory runs out.
		{"fail/endless-bundle", append([]string{"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", "/dev/zero"}, admin...), "tetherd: --bundle: svid: read /dev/zero: /dev/zero is larger than 4 MiB"},
		{"fail/endless-key", append([]string{"--svid-cert", files.Cert, "--svid-key", "/dev/zero", "--bundle", files.Bundle}, admin...), "tetherd: --svid-key: "},
		{"fail/endless-config", append([]string{"--config", "/dev/zero"}, admin...), "--config: /dev/zero is larger than 1 MiB"},
		{"fail/key-not-matching", append([]string{"--svid-cert", files.Cert, "--svid-key", other.Key, "--bundle", files.Bundle}, admin...), "tetherd: --svid-cert and --svid-key: "},
		{"fail/non-spiffe-cert", append([]string{"--svid-cert", files.Bundle, "--svid-key", files.Key, "--bundle", files.Bundle}, admin...), "tetherd: --svid-cert"},
		{"fail/bad-ttl", append(append(append([]string{}, id...), admin...), "--session-ttl", "0s"), "--session-ttl"},
		{"fail/bad-duration", append(append(append([]string{}, id...), admin...), "--idle-timeout", "soon"), "--idle-timeout"},
		{"fail/idle-above-ttl", append(append(append([]string{}, id...), admin...), "--session-ttl", "1h", "--idle-timeout", "2h"), "--idle-timeout: 2h0m0s is longer than --session-ttl 1h0m0s"},
		{"fail/bad-max", append(append(append([]string{}, id...), admin...), "--max-sessions", "-1"), "--max-sessions"},
		{"fail/bad-rate", append(append(append([]string{}, id...), admin...), "--login-rate", "-1"), "--login-rate"},
		{"fail/bad-log-level", append(append(append([]string{}, id...), admin...), "--log-level", "loud"), "--log-level"},
		{"fail/bad-log-format", append(append(append([]string{}, id...), admin...), "--log-format", "xml"), "--log-format"},
		{"fail/bad-listen", append(append(append([]string{}, id...), admin...), "--listen", "nope"), "--listen"},
		{"fail/unknown-flag", []string{"--frobnicate"}, "unknown flag"},
		{"fail/extra-arg", append(append(append([]string{}, id...), admin...), "extra"), "unknown command"},
		{"fail/unknown-command-suggested", []string{"dve"}, `unknown command "dve" for "tetherd" (did you mean dev?)`},
		{"fail/version-extra-arg", []string{"version", "now"}, `unknown command "now" for "tetherd version"`},
		{"fail/dev-unknown-flag", []string{"dev", "--frobnicate"}, "unknown flag: --frobnicate"},
		{"fail/dev-public-listen", []string{"dev", "--dir", t.TempDir(), "--listen", "0.0.0.0:0"}, "loopback"},
		{"fail/dev-with-identity", append([]string{"dev", "--dir", t.TempDir()}, id...), "dev mode makes its own identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "tetherd: ") || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("want one clear line starting \"tetherd: \" and saying %q, got %q", tc.want, stderr.String())
			}
		})
	}
}

// TestIdleTimeoutDefault: an --idle-timeout given above --session-ttl is
// refused (TestConfigErrors); the default one follows a shorter TTL, and one
// given at most the TTL is kept.
func TestIdleTimeoutDefault(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, dir, "svid", ca.Issue(t, "spiffe://example.org/tetherd"))
	for _, tc := range []struct {
		args      []string
		ttl, idle time.Duration
	}{
		{nil, 8 * time.Hour, 15 * time.Minute},
		{[]string{"--session-ttl", "10m"}, 10 * time.Minute, 10 * time.Minute},
		{[]string{"--session-ttl", "10m", "--idle-timeout", "10m"}, 10 * time.Minute, 10 * time.Minute},
		{[]string{"--session-ttl", "1h", "--idle-timeout", "20m"}, time.Hour, 20 * time.Minute},
	} {
		o := &options{}
		cmd := &cobra.Command{}
		o.register(cmd)
		if err := cmd.ParseFlags(append([]string{"--admin", "spiffe://example.org/admin/*",
			"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := o.check(cmd, false)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.session.TTL != tc.ttl || cfg.session.IdleTimeout != tc.idle {
			t.Errorf("%v: TTL %s, idle timeout %s; want %s and %s", tc.args, cfg.session.TTL, cfg.session.IdleTimeout, tc.ttl, tc.idle)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "tetherd ") {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
}

// TestWorkloadAPIAddresses: the addresses go-spiffe dials pass the check
// (TestConfigErrors has those it refuses).
func TestWorkloadAPIAddresses(t *testing.T) {
	for _, addr := range []string{"unix:///tmp/spire-agent/public/api.sock", "tcp://127.0.0.1:8081", "tcp://[::1]:8081"} {
		if err := checkWorkloadAPI(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
