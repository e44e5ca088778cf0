package main

// Roles on tetherd's command line, in its variables and settings file: what
// check makes of them, the errors (exit 2, one line naming the flag), the
// role flags' parser fuzzed, and the two-person flow on the real binary.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/internal/testpki"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/session"
)

const (
	rlAdmins = "spiffe://example.org/admin/*"
	rlAlice  = "spiffe://example.org/admin/alice"
	rlBob    = "spiffe://example.org/admin/bob"
	rlCarol  = "spiffe://example.org/admin/carol"
	rlOps    = "spiffe://example.org/ops/dave" // an admin, by a second --admin
)

// rlIdentity is an identity source that check accepts without opening it.
var rlIdentity = []string{"--workload-api", "unix:///nowhere/api.sock", "--admin", rlAdmins, "--admin", rlOps}

// rlCheck parses args (after rlIdentity), loads env and checks the options.
func rlCheck(t *testing.T, env []string, args ...string) (*config, error) {
	t.Helper()
	cmd, o := settingsCmd(t, append(slices.Clone(rlIdentity), args...)...)
	if _, err := loadSettings(cmd.Flags(), env); err != nil {
		return nil, err
	}
	return o.check(cmd, false)
}

// rlRole is what a test expects of a role: who holds and approves it
// (checked on sample IDs), its TTL and approvals.
type rlRole struct {
	holders, notHolders     []string
	ttl                     time.Duration
	approvals               int
	approvers, notApprovers []string
}

func rlCheckRoles(t *testing.T, got []session.Role, want map[string]rlRole) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d roles, want %d", len(got), len(want))
	}
	for _, r := range got {
		w, ok := want[r.Name]
		if !ok {
			t.Fatalf("role %q not expected", r.Name)
		}
		if r.TTL != w.ttl || r.Approvals != w.approvals {
			t.Fatalf("role %s: TTL %s, approvals %d; want %s and %d", r.Name, r.TTL, r.Approvals, w.ttl, w.approvals)
		}
		matches := func(m spiffeid.Matcher, id string) bool {
			return m != nil && m(spiffeid.RequireFromString(id)) == nil
		}
		for _, id := range w.holders {
			if !matches(r.Holders, id) {
				t.Fatalf("role %s: %s should hold it", r.Name, id)
			}
		}
		for _, id := range w.notHolders {
			if matches(r.Holders, id) {
				t.Fatalf("role %s: %s should not hold it", r.Name, id)
			}
		}
		if w.approvals == 0 && r.Approvers != nil {
			t.Fatalf("role %s: approvers without approvals", r.Name)
		}
		for _, id := range w.approvers {
			if !matches(r.Approvers, id) {
				t.Fatalf("role %s: %s should approve it", r.Name, id)
			}
		}
		for _, id := range w.notApprovers {
			if matches(r.Approvers, id) {
				t.Fatalf("role %s: %s should not approve it", r.Name, id)
			}
		}
	}
}

// TestRoleFlags: the role flags become the session manager's roles; the
// approvers default to the --admin patterns.
func TestRoleFlags(t *testing.T) {
	cfg, err := rlCheck(t, nil,
		"--role", "ops="+rlAdmins,
		"--role", "audit="+rlAlice+", "+rlOps, // spaces around patterns are dropped
		"--role", "breakglass="+rlAlice+","+rlBob,
		"--role", "restore="+rlAdmins,
		"--role-ttl", "audit=1h", "--role-ttl", "breakglass=15m",
		"--role-approvals", "breakglass=1", "--role-approvals", "restore=2", "--role-approvals", "audit=0",
		"--role-approvers", "restore="+rlCarol+","+rlOps+","+rlBob,
	)
	if err != nil {
		t.Fatal(err)
	}
	rlCheckRoles(t, cfg.session.Roles, map[string]rlRole{
		"ops":        {holders: []string{rlAlice, rlBob}, notHolders: []string{rlOps, "spiffe://example.org/admin"}},
		"audit":      {holders: []string{rlAlice, rlOps}, notHolders: []string{rlBob}, ttl: time.Hour},
		"breakglass": {holders: []string{rlAlice, rlBob}, notHolders: []string{rlCarol}, ttl: 15 * time.Minute, approvals: 1, approvers: []string{rlCarol, rlOps}, notApprovers: []string{"spiffe://example.org/user/eve"}},
		"restore":    {holders: []string{rlCarol}, approvals: 2, approvers: []string{rlCarol, rlOps}, notApprovers: []string{rlAlice}},
	})
	if got := cfg.roles[2].approversFromAdmins; !got {
		t.Fatalf("breakglass: approvers not from --admin")
	}

	none, err := rlCheck(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(none.session.Roles) != 0 || len(none.roles) != 0 {
		t.Fatalf("no --role: roles %v", none.session.Roles)
	}
}

// TestRoleSettings: the same roles from flags, TETHERD_ variables (a part
// with '=' starts an entry, one without is one more pattern) and the HCL
// file (a list, one role an item), and a flag beats a variable beats the
// file, flag by flag.
func TestRoleSettings(t *testing.T) {
	flags := []string{
		"--role", "ops=" + rlAdmins + "," + rlOps, "--role", "breakglass=" + rlAlice,
		"--role-ttl", "breakglass=15m", "--role-approvals", "breakglass=1",
		"--role-approvers", "breakglass=" + rlBob + "," + rlCarol,
	}
	env := []string{
		"TETHERD_ROLE=ops=" + rlAdmins + ", " + rlOps + ",breakglass=" + rlAlice,
		"TETHERD_ROLE_TTL=breakglass=15m",
		"TETHERD_ROLE_APPROVALS=breakglass=1",
		"TETHERD_ROLE_APPROVERS=breakglass=" + rlBob + "," + rlCarol,
	}
	file := writeFile(t, "tetherd.hcl", `
role           = ["ops=`+rlAdmins+`,`+rlOps+`", "breakglass=`+rlAlice+`"]
role_ttl       = ["breakglass=15m"]
role_approvals = "breakglass=1"
role_approvers = ["breakglass=`+rlBob+`,`+rlCarol+`"]
`)
	var logged []string
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flags", nil, flags},
		{"env", env, nil},
		{"file", nil, []string{"--config", file}},
		{"env-file", []string{"TETHERD_CONFIG=" + file}, nil},
	} {
		cfg, err := rlCheck(t, tc.env, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		rlCheckRoles(t, cfg.session.Roles, map[string]rlRole{
			"ops":        {holders: []string{rlAlice, rlOps}},
			"breakglass": {holders: []string{rlAlice}, notHolders: []string{rlBob}, ttl: 15 * time.Minute, approvals: 1, approvers: []string{rlBob, rlCarol}, notApprovers: []string{rlAlice, "spiffe://example.org/admin/dan"}},
		})
		var buf bytes.Buffer
		log, err := newLogger(&buf, "info", "json")
		if err != nil {
			t.Fatal(err)
		}
		log.Info("roles", logRoles(cfg.roles))
		logged = append(logged, buf.String()[strings.Index(buf.String(), `"roles":{`):])
	}
	for _, l := range logged[1:] {
		if l != logged[0] {
			t.Fatalf("the same roles log differently:\n%s\n%s", logged[0], l)
		}
	}

	// Precedence, setting by setting: the flag's --role-ttl beats the
	// variable's, which beats the file's; the file's --role stays.
	cmd, o := settingsCmd(t, append(slices.Clone(rlIdentity), "--config", file, "--role-ttl", "breakglass=5m")...)
	st, err := loadSettings(cmd.Flags(), []string{"TETHERD_ROLE_TTL=breakglass=10m", "TETHERD_ROLE_APPROVALS=breakglass=0"})
	if err != nil {
		t.Fatal(err)
	}
	if st.from["role-ttl"] != fromFlag || st.from["role-approvals"] != fromEnv || st.from["role"] != fromFile {
		t.Fatalf("from %v", st.from)
	}
	if _, err := o.check(cmd, false); err == nil || !strings.Contains(err.Error(), "--role-approvers: role breakglass needs no approval") {
		t.Fatalf("approvers from the file, approvals 0 from a variable: %v", err)
	}
	if got := o.roles.ttl.GetSlice(); !reflect.DeepEqual(got, []string{"breakglass=5m"}) {
		t.Fatalf("--role-ttl %v", got)
	}
}

// TestRoleEnvSplit: how a variable's value becomes entries.
func TestRoleEnvSplit(t *testing.T) {
	f := newRoleFlag("PATTERN", parsePatterns)
	for v, want := range map[string][]string{
		"a=spiffe://td/x":                                 {"a=spiffe://td/x"},
		"a=spiffe://td/x,spiffe://td/y":                   {"a=spiffe://td/x,spiffe://td/y"},
		"a=spiffe://td/x, spiffe://td/y ,b=spiffe://td/z": {"a=spiffe://td/x,spiffe://td/y", "b=spiffe://td/z"},
		" , a=spiffe://td/x,,":                            {"a=spiffe://td/x"},
		"spiffe://td/x,a=spiffe://td/y":                   {"spiffe://td/x", "a=spiffe://td/y"}, // refused by Set
		"":                                                nil,
	} {
		if got := f.splitEnv(v); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %q, want %q", v, got, want)
		}
	}
}

// TestRoleErrors: a bad role setting exits 2 with one line naming the flag
// (or the variable, or the file's line and key), before anything serves.
func TestRoleErrors(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	role := []string{"--role", "bg=" + rlAlice + "," + rlBob}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		file string
		want []string
	}{
		{name: "fail/not-name-value", args: []string{"--role", rlAdmins}, want: []string{`"--role"`, "is not NAME=PATTERN"}},
		{name: "fail/bad-name", args: []string{"--role", "b g=" + rlAdmins}, want: []string{`"--role"`, "a role name is"}},
		{name: "fail/no-pattern", args: []string{"--role", "bg="}, want: []string{`"--role"`, "no pattern"}},
		{name: "fail/bad-pattern", args: []string{"--role", "bg=spiffe://example.org/adm*"}, want: []string{`"--role"`, "role bg", "'*' is allowed only"}},
		{name: "fail/role-twice", args: append(slices.Clone(role), "--role", "bg="+rlCarol), want: []string{`"--role"`, `role "bg" is given twice`}},
		{name: "fail/holder-not-admin", args: []string{"--role", "bg=spiffe://example.org/user/*"}, want: []string{"--role: role bg: spiffe://example.org/user/* matches no --admin"}},
		{name: "fail/ttl-unknown-role", args: append(slices.Clone(role), "--role-ttl", "gb=15m"), want: []string{`--role-ttl: no role "gb"`}},
		{name: "fail/approvals-unknown-role", args: append(slices.Clone(role), "--role-approvals", "gb=1"), want: []string{`--role-approvals: no role "gb"`}},
		{name: "fail/approvers-unknown-role", args: append(slices.Clone(role), "--role-approvers", "gb="+rlCarol), want: []string{`--role-approvers: no role "gb"`}},
		{name: "fail/bad-duration", args: append(slices.Clone(role), "--role-ttl", "bg=soon"), want: []string{`"--role-ttl"`, `"soon" is not a duration`}},
		{name: "fail/zero-ttl", args: append(slices.Clone(role), "--role-ttl", "bg=0s"), want: []string{`"--role-ttl"`, "must be positive"}},
		{name: "fail/ttl-above-session", args: append(slices.Clone(role), "--session-ttl", "1h", "--role-ttl", "bg=2h"), want: []string{"--role-ttl: role bg: 2h0m0s is longer than --session-ttl 1h0m0s"}},
		{name: "fail/negative-approvals", args: append(slices.Clone(role), "--role-approvals", "bg=-1"), want: []string{`"--role-approvals"`, "give 0 to"}},
		{name: "fail/approvals-not-number", args: append(slices.Clone(role), "--role-approvals", "bg=two"), want: []string{`"--role-approvals"`, `"two" is not a number`}},
		{name: "fail/no-approvers", args: append(slices.Clone(role), "--role-approvals", "bg=1", "--role-approvers", "bg="), want: []string{`"--role-approvers"`, "no pattern"}},
		{name: "fail/approvers-without-approvals", args: append(slices.Clone(role), "--role-approvers", "bg="+rlCarol), want: []string{"--role-approvers: role bg needs no approval"}},
		{name: "fail/approver-not-admin", args: append(slices.Clone(role), "--role-approvals", "bg=1", "--role-approvers", "bg=spiffe://example.org/security/*"), want: []string{"--role-approvers: role bg: spiffe://example.org/security/* matches no --admin"}},
		{name: "fail/too-few-approvers", args: append(slices.Clone(role), "--role-approvals", "bg=2", "--role-approvers", "bg="+rlCarol), want: []string{"--role-approvals: role bg needs 2 approvals but --role-approvers allows 1 identity"}},
		{name: "fail/only-approver-is-holder", args: append(slices.Clone(role), "--role-approvals", "bg=1", "--role-approvers", "bg="+rlAlice), want: []string{"--role-approvals: role bg", "a session of " + rlAlice + " could never be approved"}},
		{name: "fail/env", env: []string{"TETHERD_ROLE=" + rlAdmins}, want: []string{"TETHERD_ROLE:", "is not NAME=PATTERN"}},
		{name: "fail/env-ttl", args: role, env: []string{"TETHERD_ROLE_TTL=bg=15m,1h"}, want: []string{"TETHERD_ROLE_TTL:", `"15m,1h" is not a duration`}},
		{name: "fail/file", file: "admin = [\"" + rlAdmins + "\"]\nrole = [\"bg=nope\"]\n", want: []string{"tetherd.hcl:2: role:", "role bg"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--workload-api", "unix:///nowhere/api.sock", "--admin", rlAdmins}, tc.args...)
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, "tetherd.hcl", tc.file))
			}
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "tetherd: ") {
				t.Fatalf("want one line starting \"tetherd: \", got %q", stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Fatalf("%q does not say %q", lines[0], w)
				}
			}
		})
	}
}

// FuzzRoleFlag: no entry or variable panics the role flags or check, and
// the variable's rule is an independent oracle of Set: the entries one flag
// accepted, joined with commas as one variable, are the same roles again.
func FuzzRoleFlag(f *testing.F) {
	for _, seed := range []string{
		"ops=spiffe://example.org/admin/*",
		"bg=spiffe://example.org/admin/alice, spiffe://example.org/admin/bob\nops=spiffe://example.org/*",
		"bg=15m\nops=1h",
		"bg=1\nx=0",
		"=spiffe://example.org/a\nbg=\nbg=,,",
		"a=spiffe://example.org/a/*,spiffe://example.org/a/b=c",
	} {
		f.Add(seed)
	}
	kinds := []struct {
		name  string
		parse func(string) error
		norm  func(string) string
	}{
		{"PATTERN", parsePatterns, func(v string) string { p, _ := rolePolicy(v); return strings.Join(p.Strings(), ",") }},
		{"DUR", func(v string) error { _, err := parseRoleTTL(v); return err }, func(v string) string { return v }},
		{"N", func(v string) error { _, err := parseApprovals(v); return err }, func(v string) string { return v }},
	}
	f.Fuzz(func(t *testing.T, input string) {
		entries := strings.Split(input, "\n")
		for _, k := range kinds {
			one := newRoleFlag(k.name, k.parse)
			for _, e := range entries {
				_ = one.Set(e)
			}
			again := newRoleFlag(k.name, k.parse)
			for _, e := range again.splitEnv(strings.Join(one.GetSlice(), ",")) {
				if err := again.Set(e); err != nil {
					t.Fatalf("%s: %q accepted, then refused from a variable: %v", k.name, one.GetSlice(), err)
				}
			}
			if !reflect.DeepEqual(one.names, again.names) {
				t.Fatalf("%s: names %q, from a variable %q", k.name, one.names, again.names)
			}
			for i := range one.values {
				if k.norm(one.values[i]) != k.norm(again.values[i]) {
					t.Fatalf("%s: %q, from a variable %q", k.name, one.values[i], again.values[i])
				}
			}
		}
		// Whatever the flags hold, build decides without panicking.
		r := roleFlags{}
		r.holders = newRoleFlag("PATTERN", parsePatterns)
		r.ttl = newRoleFlag("DUR", kinds[1].parse)
		r.approvals = newRoleFlag("N", kinds[2].parse)
		r.approvers = newRoleFlag("PATTERN", parsePatterns)
		for i, e := range entries {
			_ = []*roleFlag{r.holders, r.ttl, r.approvals, r.approvers}[i%4].Set(e)
		}
		admins, _ := rolePolicy("spiffe://example.org/admin/*,spiffe://example.org/ops/a")
		_, _ = r.build(admins, 8*time.Hour, (*settings)(nil).name)
	})
}

// rlCall makes an API request with an optional JSON body and token.
func rlCall(p *ftProc, c *http.Client, method, path, token string, in any) (int, []byte) {
	p.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			p.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	return p.callBody(c, method, path, token, body)
}

// rlDecode decodes an answer of want status into v (an *api.Error's code
// for an error answer).
func rlDecode(t *testing.T, what string, status int, body []byte, want int, v any) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: %d %s, want %d", what, status, body, want)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", what, err, body)
	}
}

func rlCode(t *testing.T, what string, status int, body []byte, want int, code api.Code) {
	t.Helper()
	var er api.ErrorResponse
	rlDecode(t, what, status, body, want, &er)
	if er.Error == nil || er.Error.Code != code {
		t.Fatalf("%s: %s, want code %s", what, body, code)
	}
}

// TestRolesTwoPerson: the real tetherd, its roles from the settings file, a
// variable and a flag: alice asks for breakglass and waits; her token is
// refused until bob approves (alice herself may not); then it works, for
// the role's 15 minutes. A second request, denied, ends. Each step is a
// security event naming both identities.
func TestRolesTwoPerson(t *testing.T) {
	ca := testpki.NewCA(t, "example.org")
	files := ca.WriteFiles(t, t.TempDir(), "svid", ca.Issue(t, ftServerID))
	file := writeFile(t, "tetherd.hcl", `
admin    = ["`+rlAdmins+`"]
role     = ["ops=`+rlAdmins+`", "breakglass=`+rlAlice+`,`+rlBob+`"]
role_ttl = ["breakglass=15m"]
`)
	p := ftStartEnv(t, opEnv("TETHERD_ROLE_APPROVALS=breakglass=1"), "--config", file,
		"--svid-cert", files.Cert, "--svid-key", files.Key, "--bundle", files.Bundle,
		"--role-approvers", "breakglass="+rlAdmins, "--login-rate", "0")
	started := p.serving()
	wantRoles := map[string]any{
		"ops":        map[string]any{"holders": []any{rlAdmins}, "default": true, "approvals": float64(0)},
		"breakglass": map[string]any{"holders": []any{rlAlice, rlBob}, "default": false, "ttl": "15m0s", "approvals": float64(1), "approvers": []any{rlAdmins}},
	}
	if !reflect.DeepEqual(started["roles"], wantRoles) {
		t.Fatalf("tetherd.started roles %v, want %v", started["roles"], wantRoles)
	}
	settings, _ := p.Event(t, "tetherd.config", 1, time.Second)["settings"].(map[string]any)
	for key, want := range map[string]map[string]any{
		"role":           {"value": []any{"ops=" + rlAdmins, "breakglass=" + rlAlice + "," + rlBob}, "from": fromFile},
		"role_approvals": {"value": []any{"breakglass=1"}, "from": fromEnv},
		"role_approvers": {"value": []any{"breakglass=" + rlAdmins}, "from": fromFlag},
	} {
		if !reflect.DeepEqual(settings[key], any(want)) {
			t.Fatalf("tetherd.config %s: %v, want %v", key, settings[key], want)
		}
	}

	alice := p.apiClient(ca.Issue(t, rlAlice))
	bob := p.apiClient(ca.Issue(t, rlBob))
	carol := p.apiClient(ca.Issue(t, rlCarol)) // an admin who may not hold breakglass
	login := func(c *http.Client, roles ...string) api.LoginResponse {
		t.Helper()
		var in any
		if roles != nil {
			in = api.LoginRequest{Roles: roles}
		}
		status, body := rlCall(p, c, http.MethodPost, api.PathSessions, "", in)
		var lr api.LoginResponse
		rlDecode(t, "login", status, body, http.StatusCreated, &lr)
		return lr
	}

	plain := login(bob)
	if !reflect.DeepEqual(plain.Session.Roles, []string{"ops"}) || plain.Session.State != api.StateActive {
		t.Fatalf("a plain login: %+v", plain.Session)
	}
	status, body := rlCall(p, carol, http.MethodPost, api.PathSessions, "", api.LoginRequest{Roles: []string{"breakglass"}})
	rlCode(t, "carol asks for breakglass", status, body, http.StatusForbidden, api.CodeForbidden)

	asked := login(alice, "breakglass")
	s := asked.Session
	if !reflect.DeepEqual(s.Roles, []string{"breakglass"}) || s.State != api.StatePending || len(s.Approvals) != 0 {
		t.Fatalf("asked for breakglass: %+v", s)
	}
	if d := s.ExpiresAt.Sub(s.CreatedAt); d > 15*time.Minute || d <= 15*time.Minute-time.Second {
		t.Fatalf("breakglass session lives %s, want the role's 15m (its end in whole seconds)", d)
	}
	ev := p.Event(t, "session.approval_requested", 1, 10*time.Second)
	if ev["spiffe_id"] != rlAlice || ev["session_id"] != s.SessionID {
		t.Fatalf("session.approval_requested %v", ev)
	}
	status, body = rlCall(p, alice, http.MethodGet, api.PathSessionsSelf, asked.Token, nil)
	rlCode(t, "pending token", status, body, http.StatusForbidden, api.CodeApprovalPending)
	aliceOwn := login(alice)
	status, body = rlCall(p, alice, http.MethodPost, api.PathSessions+"/"+s.SessionID+api.PathApprove, aliceOwn.Token, nil)
	rlCode(t, "alice approves herself", status, body, http.StatusForbidden, api.CodeForbidden)
	if ev := p.Event(t, "approval.denied", 1, 10*time.Second); ev["spiffe_id"] != rlAlice {
		t.Fatalf("approval.denied %v", ev)
	}

	status, body = rlCall(p, bob, http.MethodPost, api.PathSessions+"/"+s.SessionID+api.PathApprove, plain.Token, nil)
	var approved api.SessionResponse
	rlDecode(t, "bob approves", status, body, http.StatusOK, &approved)
	if approved.Session.State != api.StateActive || len(approved.Session.Approvals) != 1 || approved.Session.Approvals[0].SPIFFEID != rlBob {
		t.Fatalf("approved: %+v", approved.Session)
	}
	for _, name := range []string{"session.approval", "session.approved"} {
		ev := p.Event(t, name, 1, 10*time.Second)
		if ev["session_id"] != s.SessionID || ev["requester"] != rlAlice {
			t.Fatalf("%s %v", name, ev)
		}
	}
	if ev := p.Events("session.approval")[0]; ev["spiffe_id"] != rlBob {
		t.Fatalf("session.approval names the approver: %v", ev)
	}
	var self api.SessionResponse
	status, body = rlCall(p, alice, http.MethodGet, api.PathSessionsSelf, asked.Token, nil)
	rlDecode(t, "approved token", status, body, http.StatusOK, &self)
	if self.Session.SessionID != s.SessionID || self.Session.State != api.StateActive {
		t.Fatalf("whoami after approval: %+v", self.Session)
	}

	denied := login(alice, "breakglass")
	status, body = rlCall(p, bob, http.MethodPost, api.PathSessions+"/"+denied.Session.SessionID+api.PathDeny, plain.Token, nil)
	rlDecode(t, "bob denies", status, body, http.StatusOK, &self)
	if ev := p.Event(t, "session.denied", 1, 10*time.Second); ev["spiffe_id"] != rlBob || ev["requester"] != rlAlice {
		t.Fatalf("session.denied %v", ev)
	}
	status, body = rlCall(p, alice, http.MethodGet, api.PathSessionsSelf, denied.Token, nil)
	rlCode(t, "denied token", status, body, http.StatusUnauthorized, api.CodeSessionEnded)
	p.sigterm()
}
