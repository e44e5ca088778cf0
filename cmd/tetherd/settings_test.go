package main

// Settings from flags, TETHERD_* variables and the --config HCL file:
// precedence, errors, and what tetherd.config logs.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherproject/tether/internal/testpki"
)

// settingsCmd is a command with tetherd's serving flags, parsed from args.
func settingsCmd(t *testing.T, args ...string) (*cobra.Command, *options) {
	t.Helper()
	o := &options{}
	cmd := &cobra.Command{Use: "tetherd"}
	o.register(cmd)
	o.registerServe(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return cmd, o
}

// writeFile writes content to name in a new temporary folder.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSettingsPrecedence(t *testing.T) {
	file := writeFile(t, "tetherd.hcl", `
# every kind of value
max_sessions = 100
max_sessions_per_identity = 5
session_ttl = "2h"
login_rate = 0.5
admin = ["spiffe://example.org/admin/*", "spiffe://example.org/ops/bob"]
introspector = "spiffe://example.org/gateway"
log_format = <<EOF
text
EOF
`)
	other := writeFile(t, "other.hcl", `max_sessions = 7`)

	for _, tc := range []struct {
		name string
		args []string
		env  []string
		// want: the flags' values; from: where they came from ("" = default)
		want map[string]string
		from map[string]string
	}{
		{
			name: "defaults",
			want: map[string]string{"max-sessions": "10000", "session-ttl": "8h0m0s", "admin": "[]"},
			from: map[string]string{"max-sessions": "", "admin": ""},
		},
		{
			name: "file",
			args: []string{"--config", file},
			want: map[string]string{
				"max-sessions": "100", "max-sessions-per-identity": "5", "session-ttl": "2h0m0s", "login-rate": "0.5",
				"admin": "[spiffe://example.org/admin/*,spiffe://example.org/ops/bob]", "introspector": "[spiffe://example.org/gateway]",
				"log-format": "text", "listen": "127.0.0.1:8443",
			},
			from: map[string]string{"max-sessions": fromFile, "admin": fromFile, "log-format": fromFile, "listen": ""},
		},
		{
			name: "env-beats-file",
			args: []string{"--config", file},
			env:  []string{"TETHERD_MAX_SESSIONS=200", "TETHERD_ADMIN=spiffe://example.org/a, spiffe://example.org/b/*", "TETHERD_LISTEN=127.0.0.1:9443"},
			want: map[string]string{
				"max-sessions": "200", "admin": "[spiffe://example.org/a,spiffe://example.org/b/*]", "listen": "127.0.0.1:9443",
				"max-sessions-per-identity": "5",
			},
			from: map[string]string{"max-sessions": fromEnv, "admin": fromEnv, "listen": fromEnv, "max-sessions-per-identity": fromFile},
		},
		{
			name: "flag-beats-env-and-file",
			args: []string{"--config", file, "--max-sessions", "300", "--admin", "spiffe://example.org/c"},
			env:  []string{"TETHERD_MAX_SESSIONS=200", "TETHERD_ADMIN=spiffe://example.org/a"},
			want: map[string]string{"max-sessions": "300", "admin": "[spiffe://example.org/c]", "session-ttl": "2h0m0s"},
			from: map[string]string{"max-sessions": fromFlag, "admin": fromFlag, "session-ttl": fromFile},
		},
		{
			name: "empty-variable-is-unset",
			args: []string{"--config", file},
			env:  []string{"TETHERD_MAX_SESSIONS="},
			want: map[string]string{"max-sessions": "100"},
			from: map[string]string{"max-sessions": fromFile},
		},
		{
			name: "TETHERD_CONFIG",
			env:  []string{"TETHERD_CONFIG=" + file},
			want: map[string]string{"max-sessions": "100"},
			from: map[string]string{"max-sessions": fromFile},
		},
		{
			name: "--config-beats-TETHERD_CONFIG",
			args: []string{"--config", other},
			env:  []string{"TETHERD_CONFIG=" + file},
			want: map[string]string{"max-sessions": "7", "session-ttl": "8h0m0s"},
			from: map[string]string{"max-sessions": fromFile, "session-ttl": ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, _ := settingsCmd(t, tc.args...)
			st, err := loadSettings(cmd.Flags(), tc.env)
			if err != nil {
				t.Fatal(err)
			}
			for flag, want := range tc.want {
				if got, want := cmd.Flags().Lookup(flag).Value.String(), want; !reflect.DeepEqual(got, want) {
					t.Fatalf("--%s: got %v, want %v", flag, got, want)
				}
			}
			for flag, want := range tc.from {
				if got, want := st.from[flag], want; !reflect.DeepEqual(got, want) {
					t.Fatalf("--%s comes from: got %v, want %v", flag, got, want)
				}
			}
		})
	}
}

// TestSettingsReachTheOptions: the values loaded are the ones check sees.
func TestSettingsReachTheOptions(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, "spiffe://example.org/tetherd"))
	file := writeFile(t, "tetherd.hcl", `
svid_cert = "`+files.Cert+`"
svid_key = "`+files.Key+`"
bundle = "`+files.Bundle+`"
admin = ["spiffe://example.org/admin/*"]
spiffe_id = "spiffe://example.org/tetherd"
session_ttl = "1h"
`)
	cmd, o := settingsCmd(t, "--config", file)
	_, err := loadSettings(cmd.Flags(), []string{"TETHERD_IDLE_TIMEOUT=5m"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.check(cmd, false)
	if err != nil {
		t.Fatal(err)
	}
	if !(cfg.files) {
		t.Fatalf("cfg.files: false")
	}
	if got, want := cfg.spiffeID.String(), "spiffe://example.org/tetherd"; !reflect.DeepEqual(got, want) {
		t.Fatalf("cfg.spiffeID.String(): got %v, want %v", got, want)
	}
	if got, want := cfg.session.TTL, time.Hour; !reflect.DeepEqual(got, want) {
		t.Fatalf("cfg.session.TTL: got %v, want %v", got, want)
	}
	if got, want := cfg.session.IdleTimeout, 5*time.Minute; !reflect.DeepEqual(got, want) {
		t.Fatalf("cfg.session.IdleTimeout: got %v, want %v", got, want)
	}
	if got, want := cfg.admins.Strings(), []string{"spiffe://example.org/admin/*"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cfg.admins.Strings(): got %v, want %v", got, want)
	}
}

// TestSettingsErrors: a bad file or variable exits 2 with one line naming
// the file, line and key, or the variable: a value of the wrong type, and a
// value that fails tetherd's own checks alike.
func TestSettingsErrors(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	missing := filepath.Join(t.TempDir(), "missing.hcl")
	// serving: enough for check to reach every other setting (the Workload
	// API is not dialled before the settings are good).
	serving := []string{"--admin", "spiffe://example.org/a", "--workload-api", "unix:///nowhere.sock"}
	ca := testpki.NewCA(t, "example.org")
	id := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, "spiffe://example.org/tetherd"))
	garbage := writeFile(t, "garbage.pem", "this is not a PEM file\n")
	for _, tc := range []struct {
		name    string
		file    string // the settings file's content; "" for none
		env     []string
		args    []string
		want    []string
		skipArg bool // no --config
	}{
		{name: "fail/unknown-key", file: "admin = [\"spiffe://example.org/a\"]\nmax_sesions = 5\n", want: []string{"tetherd.hcl:2:", `unknown setting "max_sesions"`}},
		{name: "fail/dashed-key", file: "max-sessions = 5\n", want: []string{"tetherd.hcl:1:", `unknown setting "max-sessions"`}},
		{name: "fail/config-in-file", file: "config = \"other.hcl\"\n", want: []string{`unknown setting "config"`}},
		{name: "fail/version-in-file", file: "version = true\n", want: []string{`unknown setting "version"`}},
		{name: "fail/bad-number", file: "max_sessions = \"many\"\n", want: []string{"tetherd.hcl:1: max_sessions:", `"many"`}},
		{name: "fail/bad-duration", file: "\n\nsession_ttl = 3600\n", want: []string{"tetherd.hcl:3: session_ttl:", "3600"}},
		{name: "fail/list-for-one-value", file: "listen = [\"a:1\", \"b:2\"]\n", want: []string{"tetherd.hcl:1: listen: one value, not a list"}},
		{name: "fail/list-of-blocks", file: "admin = [{ a = 1 }]\n", want: []string{"tetherd.hcl:1: admin: a list of strings"}},
		{name: "fail/block", file: "tetherd {\n  max_sessions = 5\n}\n", want: []string{"tetherd.hcl:1: tetherd: a block is not a setting"}},
		{name: "fail/labelled-block", file: "plugin \"x\" {\n}\n", want: []string{"tetherd.hcl:1: a block is not a setting"}},
		{name: "fail/duplicate-key", file: "max_sessions = 5\nmax_sessions = 6\n", want: []string{"tetherd.hcl:2: max_sessions: given twice (first on line 1)"}},
		{name: "fail/not-hcl", file: "max_sessions = = 5\n", want: []string{"tetherd.hcl:1: "}}, // the file and the line, as every other file error
		{name: "fail/bad-value-overridden-by-a-flag-is-still-a-bad-key", file: "max_sesions = 5\n", args: []string{"--max-sessions", "5"}, want: []string{`unknown setting "max_sesions"`}},
		{name: "fail/missing-file", args: []string{"--config", missing}, skipArg: true, want: []string{"--config", missing}},
		{name: "fail/missing-file-from-env", env: []string{"TETHERD_CONFIG=" + missing}, skipArg: true, want: []string{"--config", missing}},
		{name: "fail/bad-env", env: []string{"TETHERD_MAX_SESSIONS=many"}, skipArg: true, want: []string{"TETHERD_MAX_SESSIONS:", `"many"`}},
		{name: "fail/bad-env-duration", env: []string{"TETHERD_IDLE_TIMEOUT=soon"}, skipArg: true, want: []string{"TETHERD_IDLE_TIMEOUT:", `"soon"`}},
		{name: "fail/bad-spiffe-id-from-env", env: []string{"TETHERD_SPIFFE_ID=tetherd"}, skipArg: true, args: serving, want: []string{"tetherd: TETHERD_SPIFFE_ID: ", `"tetherd" is not a SPIFFE ID`}},
		// Values that parse but fail tetherd's own checks name where they
		// came from too: the file's line and key, or the variable.
		{name: "fail/file-log-level", file: "\nlog_level = \"loud\"\n", args: serving, want: []string{"tetherd.hcl:2: log_level: ", `"loud" is not debug, info, warn or error`}},
		{name: "fail/file-log-format", file: "log_format = \"xml\"\n", args: serving, want: []string{"tetherd.hcl:1: log_format: ", `"xml" is not json or text`}},
		{name: "fail/file-admin", file: "admin = [\"spiffe://x/a*\"]\n", args: []string{"--workload-api", "unix:///nowhere.sock"}, want: []string{"tetherd.hcl:1: admin: ", "spiffe://x/a*"}},
		{name: "fail/file-introspector", file: "introspector = \"nope\"\n", args: serving, want: []string{"tetherd.hcl:1: introspector: "}},
		{name: "fail/file-session-ttl", file: "session_ttl = \"0s\"\n", args: serving, want: []string{"tetherd.hcl:1: session_ttl: must be positive"}},
		{name: "fail/file-idle-above-ttl", file: "session_ttl = \"1h\"\nidle_timeout = \"2h\"\n", args: serving, want: []string{"tetherd.hcl:2: idle_timeout: 2h0m0s is longer than --session-ttl 1h0m0s"}},
		{name: "fail/file-listen", file: "listen = \"nope\"\n", args: serving, want: []string{"tetherd.hcl:1: listen: "}},
		{name: "fail/file-workload-api", file: "workload_api = \"unix://host/path\"\n", args: []string{"--admin", "spiffe://example.org/a"}, want: []string{"tetherd.hcl:1: workload_api: ", `"unix://host/path" is not unix:///path or tcp://ip:port`}},
		{name: "fail/file-store", file: "store = \"disk\"\n", args: serving, want: []string{"tetherd.hcl:1: store: ", `"disk"`}},
		{name: "fail/file-role-ttl", file: "role = [\"ops=spiffe://example.org/a\"]\nrole_ttl = [\"ops=2h\"]\nsession_ttl = \"1h\"\n", args: serving, want: []string{"tetherd.hcl:2: role_ttl: role ops: 2h0m0s is longer"}},
		{name: "fail/env-log-level", env: []string{"TETHERD_LOG_LEVEL=loud"}, skipArg: true, args: serving, want: []string{"tetherd: TETHERD_LOG_LEVEL: ", `"loud"`}},
		{name: "fail/env-log-format", env: []string{"TETHERD_LOG_FORMAT=xml"}, skipArg: true, args: serving, want: []string{"tetherd: TETHERD_LOG_FORMAT: ", `"xml"`}},
		{name: "fail/env-admin", env: []string{"TETHERD_ADMIN=spiffe://x/a*"}, skipArg: true, args: []string{"--workload-api", "unix:///nowhere.sock"}, want: []string{"tetherd: TETHERD_ADMIN: ", "spiffe://x/a*"}},
		{name: "fail/env-max-sessions", env: []string{"TETHERD_MAX_SESSIONS=0"}, skipArg: true, args: serving, want: []string{"tetherd: TETHERD_MAX_SESSIONS: must be positive"}},
		{name: "fail/env-workload-api", env: []string{"TETHERD_WORKLOAD_API=tcp://localhost:1234"}, skipArg: true, args: []string{"--admin", "spiffe://example.org/a"}, want: []string{"tetherd: TETHERD_WORKLOAD_API: ", `"tcp://localhost:1234"`}},
		{name: "fail/env-role-approvers", env: []string{"TETHERD_ROLE=ops=spiffe://example.org/a", "TETHERD_ROLE_APPROVERS=ops=spiffe://example.org/a"}, skipArg: true, args: serving, want: []string{"tetherd: TETHERD_ROLE_APPROVERS: role ops needs no approval"}},
		{name: "fail/file-bundle", file: "admin = [\"spiffe://example.org/a\"]\nsvid_cert = \"" + id.Cert + "\"\nsvid_key = \"" + id.Key + "\"\nbundle = \"" + garbage + "\"\n", want: []string{"tetherd.hcl:4: bundle: ", garbage}},
		{name: "fail/env-svid-key", env: []string{"TETHERD_SVID_KEY=" + garbage}, skipArg: true, args: []string{"--admin", "spiffe://example.org/a", "--svid-cert", id.Cert, "--bundle", id.Bundle}, want: []string{"tetherd: TETHERD_SVID_KEY: ", garbage}},
		// $SPIFFE_ENDPOINT_SOCKET is the default of --workload-api: a bad
		// one is named as itself.
		{name: "fail/spiffe-endpoint-socket", env: []string{"SPIFFE_ENDPOINT_SOCKET=tcp://localhost:1234"}, skipArg: true, args: []string{"--admin", "spiffe://example.org/a"}, want: []string{"tetherd: SPIFFE_ENDPOINT_SOCKET: ", `"tcp://localhost:1234" is not unix:///path or tcp://ip:port`}},
		// A flag given on the command line is named as the flag, whatever
		// the file and the variables say.
		{name: "fail/flag-beats-file-and-env", file: "log_level = \"debug\"\n", env: []string{"TETHERD_LOG_LEVEL=info"}, args: append([]string{"--log-level", "loud"}, serving...), want: []string{"tetherd: --log-level: ", `"loud"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			args := tc.args
			if !tc.skipArg {
				args = append([]string{"--config", writeFile(t, "tetherd.hcl", tc.file)}, args...)
			}
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			if got, want := code, 2; !reflect.DeepEqual(got, want) {
				t.Fatalf("stderr: %s: got %v, want %v", stderr.String(), got, want)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if v := lines; len(v) != 1 {
				t.Fatalf("one clear line: %q: %d items, want %d: %v", stderr.String(), len(v), 1, v)
			}
			if !(strings.HasPrefix(lines[0], "tetherd: ")) {
				t.Fatalf("%v: false", lines[0])
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Fatalf("%q does not contain %q", lines[0], w)
				}
			}
		})
	}
}

// TestLogConfig: tetherd.config lists each setting that is not a default,
// with where it came from, the file, and the variables it ignored; a secret
// is never written.
func TestLogConfig(t *testing.T) {
	file := writeFile(t, "tetherd.hcl", "max_sessions = 100\nadmin = [\"spiffe://example.org/admin/*\"]\n")
	cmd, _ := settingsCmd(t, "--config", file, "--listen", "127.0.0.1:0")
	var secret string
	cmd.Flags().StringVar(&secret, "etcd-password", "", "a secret (test only)")
	if err := cmd.Flags().SetAnnotation("etcd-password", annotationSecret, nil); err != nil {
		t.Fatal(err)
	}
	st, err := loadSettings(cmd.Flags(), []string{
		"TETHERD_SESSION_TTL=1h", "TETHERD_ETCD_PASSWORD=hunter2",
		"TETHERD_SERVICE_HOST=10.0.0.1", "TETHERD_PORT=tcp://10.0.0.1:8443", // Kubernetes' service links
	})
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	logConfig(log, cmd.Flags(), st, false)
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("%q contains %q", buf.String(), "hunter2")
	}

	var ev struct {
		Msg      string `json:"msg"`
		Settings map[string]struct {
			Value any    `json:"value"`
			From  string `json:"from"`
		} `json:"settings"`
		ConfigFile string   `json:"config_file"`
		IgnoredEnv []string `json:"ignored_env"`
	}
	if err := json.Unmarshal(buf.Bytes(), &ev); err != nil {
		t.Fatalf("%v: %v", buf.String(), err)
	}
	if got, want := ev.Msg, "tetherd.config"; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Msg: got %v, want %v", got, want)
	}
	if got, want := ev.ConfigFile, file; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.ConfigFile: got %v, want %v", got, want)
	}
	if got, want := ev.IgnoredEnv, []string{"TETHERD_PORT", "TETHERD_SERVICE_HOST"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.IgnoredEnv: got %v, want %v", got, want)
	}
	if v := ev.Settings; len(v) != 5 {
		t.Fatalf("only what is not a default: %v: %d items, want %d: %v", ev.Settings, len(v), 5, v)
	}
	if got, want := ev.Settings["max_sessions"].Value, "100"; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"max_sessions\"].Value: got %v, want %v", got, want)
	}
	if got, want := ev.Settings["max_sessions"].From, fromFile; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"max_sessions\"].From: got %v, want %v", got, want)
	}
	if got, want := ev.Settings["admin"].Value, []any{"spiffe://example.org/admin/*"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"admin\"].Value: got %v, want %v", got, want)
	}
	if got, want := ev.Settings["session_ttl"].Value, "1h0m0s"; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"session_ttl\"].Value: got %v, want %v", got, want)
	}
	if got, want := ev.Settings["session_ttl"].From, fromEnv; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"session_ttl\"].From: got %v, want %v", got, want)
	}
	if got, want := ev.Settings["listen"].From, fromFlag; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"listen\"].From: got %v, want %v", got, want)
	}
	if got, want := ev.Settings["etcd_password"].Value, redacted; !reflect.DeepEqual(got, want) {
		t.Fatalf("ev.Settings[\"etcd_password\"].Value: got %v, want %v", got, want)
	}
}

// TestLogDurations: durations are written as the flags take them, in both
// formats (JSON would write nanoseconds).
func TestLogDurations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x", "session_ttl", 8*time.Hour, "nested", map[string]any{"n": 1})
		log.With("idle_timeout", 15*time.Minute).Info("y")
		out := buf.String()
		if !strings.Contains(out, "8h0m0s") {
			t.Fatalf("%v: %q does not contain %q", format, out, "8h0m0s")
		}
		if !strings.Contains(out, "15m0s") {
			t.Fatalf("%v: %q does not contain %q", format, out, "15m0s")
		}
		if strings.Contains(out, "28800000000000") {
			t.Fatalf("%v: %q contains %q", format, out, "28800000000000")
		}
	}
}
