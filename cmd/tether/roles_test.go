package main

// Roles and the two-person rule end to end: the real tetherd with roles,
// and two admins at their terminals (the harness's stack and users).

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/internal/testproc"
	"github.com/tetherproject/tether/internal/testutil"
	"github.com/tetherproject/tether/pkg/api"
)

const daveID = "spiffe://example.org/admin/dave" // an admin who may not hold breakglass

// rolesStack is tetherd with the roles of the README: every admin holds
// ops; alice and bob may ask for breakglass, which lasts 15 minutes and
// waits for one approval by another admin.
func rolesStack(t *testing.T) *stack {
	t.Helper()
	return newStack(t,
		"--role", "ops="+adminFlag,
		"--role", "breakglass="+aliceID+","+bobID,
		"--role-ttl", "breakglass=15m",
		"--role-approvals", "breakglass=1")
}

var approveLine = regexp.MustCompile(`(?m)^  tether sessions approve (\S+)$`)

// pendingID is the session ID login printed in the approver's command.
func pendingID(t *testing.T, stdout string) string {
	t.Helper()
	m := approveLine.FindStringSubmatch(stdout)
	require.NotNil(t, m, "login shows the approver's command:\n%s", stdout)
	return m[1]
}

// TestRolesTwoPerson: alice asks for breakglass and gets a pending session
// at once; every command that needs it says it waits and what an approver
// runs, without logging in again; she may not approve it herself; bob sees
// it pending, approves it, and it works, showing its roles and approval.
func TestRolesTwoPerson(t *testing.T) {
	t.Parallel()
	s := rolesStack(t)
	alice, bob := s.user(t, aliceID), s.user(t, bobID)

	r := alice.ok("login")
	require.Regexp(t, `Roles:\s+ops\n`, r.stdout, "a plain login: the roles that need no asking")
	require.Regexp(t, `State:\s+active\n`, r.stdout)

	r = alice.ok("login", "--role", "breakglass")
	require.Contains(t, r.stdout, "Logged in to "+s.URL()+": the session waits for approval.")
	require.Regexp(t, `Roles:\s+breakglass\n`, r.stdout)
	require.Regexp(t, `State:\s+pending\n`, r.stdout)
	require.Regexp(t, `Expires:\s+in 1[45]m`, r.stdout, "the role's 15 minutes")
	require.Contains(t, r.stdout, "another admin allowed to approve role breakglass")
	id := pendingID(t, r.stdout)

	waits := []string{"session " + id + " (role breakglass) waits for approval", "an approver runs 'tether sessions approve " + id + "'"}
	alice.fail(1, []string{"whoami"}, waits...)
	alice.fail(1, []string{"sessions", "list"}, waits...)
	alice.fail(1, []string{"token"}, waits...)
	alice.fail(1, []string{"sessions", "approve", id}, append([]string{"your cached session cannot approve anything"}, waits...)...)
	require.FileExists(t, alice.cacheFile(), "a pending session is kept")

	// bob sees it pending, and alice has no other session: no command
	// above logged in around it (and login --role ended her ops session).
	var mine []api.Session
	for _, sess := range bob.list() {
		if sess.SPIFFEID == aliceID {
			mine = append(mine, sess)
		}
	}
	require.Len(t, mine, 1)
	require.Equal(t, id, mine[0].SessionID)
	require.Equal(t, api.StatePending, mine[0].State)
	require.Equal(t, []string{"breakglass"}, mine[0].Roles)
	r = bob.ok("sessions", "list")
	require.Regexp(t, id+`\s+`+regexp.QuoteMeta(aliceID)+`\s+pending\s+.*\s+breakglass\n`, r.stdout)
	for _, verb := range []string{"approve", "deny"} {
		values, _ := bob.completions("sessions", verb, "")
		require.Equal(t, []string{id}, values, "completion offers the pending sessions")
	}
	require.Contains(t, bob.run("__complete", "sessions", "approve", "").stdout, id+"\t"+aliceID+" (role breakglass)")

	// alice, from another terminal with a session of her own, may not
	// approve her own request.
	aliceElsewhere := s.user(t, aliceID)
	aliceElsewhere.fail(1, []string{"sessions", "approve", id}, "tetherd does not let "+aliceID+" approve session "+id, "never approves its own session")

	r = bob.ok("sessions", "approve", id)
	require.Equal(t, "Approved session "+id+" of "+aliceID+" (role breakglass): it is active now.\n", r.stdout)
	bob.fail(1, []string{"sessions", "approve", id}, "session "+id+" does not wait for approval")
	bob.fail(1, []string{"sessions", "deny", "nosuchsession"}, "no live session nosuchsession")

	r = alice.ok("whoami")
	require.Contains(t, r.stdout, id)
	require.Regexp(t, `Roles:\s+breakglass\n`, r.stdout)
	require.Regexp(t, `State:\s+active\n`, r.stdout)
	require.Regexp(t, `Approved:\s+by `+regexp.QuoteMeta(bobID)+`, (just now|\d+s ago)\n`, r.stdout)
	me := alice.session("whoami")
	require.Equal(t, api.StateActive, me.State)
	require.Len(t, me.Approvals, 1)
	require.Equal(t, bobID, me.Approvals[0].SPIFFEID)
	r = alice.ok("sessions", "list")
	require.Regexp(t, id+`\s+`+regexp.QuoteMeta(aliceID)+`\s+active\s+.*\s+breakglass\n`, r.stdout)
}

// TestRolesDeny: a denied session ends; in JSON, login and deny print the
// API's objects.
func TestRolesDeny(t *testing.T) {
	t.Parallel()
	s := rolesStack(t)
	alice, bob := s.user(t, aliceID), s.user(t, bobID)

	pending := alice.session("login", "--role", "breakglass")
	require.Equal(t, api.StatePending, pending.State)
	require.Equal(t, []string{"breakglass"}, pending.Roles)
	denied := bob.session("sessions", "deny", pending.SessionID)
	require.Equal(t, pending.SessionID, denied.SessionID)
	r := bob.ok("sessions", "list")
	require.NotContains(t, r.stdout, pending.SessionID)
	alice.fail(1, []string{"whoami"}, "the session has ended")

	// A role alice's identity may not hold, or that tetherd has not.
	dave := s.user(t, daveID)
	dave.fail(1, []string{"login", "--role", "breakglass"}, "refused by tetherd at "+s.URL(), `may not hold role "breakglass"`)
	dave.fail(1, []string{"login", "--role", "ops,audit"}, `may not hold role "audit"`)
	r = dave.ok("login", "--role", "ops")
	require.Regexp(t, `Roles:\s+ops\n`, r.stdout)

	for _, args := range [][]string{{"sessions", "approve"}, {"sessions", "deny", "a", "b"}, {"login", "--role", ""}} {
		bob.fail(2, args)
	}
}

// TestRolesLogout: a session waiting for approval may end itself: logout
// ends it at tetherd and deletes the cache file.
func TestRolesLogout(t *testing.T) {
	t.Parallel()
	s := rolesStack(t)
	alice, bob := s.user(t, aliceID), s.user(t, bobID)
	alice.session("login", "--role", "breakglass")
	require.Len(t, bob.list("--spiffe-id", aliceID), 1)
	alice.ok("logout")
	require.NoFileExists(t, alice.cacheFile())
	require.Empty(t, bob.list("--spiffe-id", aliceID), "the pending session ended")
}

// waiting starts tether login --role breakglass --wait as the user, polling
// every 20ms, and returns it once it shows the approver's command, with the
// session ID.
func (u *user) waiting(extra ...string) (*testproc.Process, string) {
	u.t.Helper()
	p := testproc.StartT(u.t, u.command(nil, append([]string{"login", "--role", "breakglass", "--wait", "--wait-interval", "20ms"}, extra...)...))
	var id string
	testutil.WaitFor(u.t, 30*time.Second, "login --wait to show the approver's command", func() bool {
		if m := approveLine.FindStringSubmatch(p.Stdout()); m != nil {
			id = m[1]
			return true
		}
		if strings.Contains(p.Stdout(), `"session_id"`) {
			var lr api.SessionResponse
			if json.NewDecoder(strings.NewReader(p.Stdout())).Decode(&lr) == nil {
				id = lr.Session.SessionID
				return true
			}
		}
		return p.Exited()
	})
	require.NotEmpty(u.t, id, "login --wait:\n%s", p.Report())
	return p, id
}

// TestRolesLoginWait: login --wait waits until bob approves (exit 0,
// showing the approval), fails when he denies (exit 1), stops on Ctrl-C
// (130, the session still pending); in JSON it prints the pending session,
// then the active one.
func TestRolesLoginWait(t *testing.T) {
	t.Parallel()
	s := rolesStack(t)
	alice, bob := s.user(t, aliceID), s.user(t, bobID)

	t.Run("approved", func(t *testing.T) {
		p, id := alice.waiting()
		require.Contains(t, p.Stdout(), "Waiting for the approval")
		require.False(t, p.Exited(), "it waits:\n%s", p.Report())
		bob.ok("sessions", "approve", id)
		require.Equal(t, 0, p.Exit(t, 30*time.Second), p.Report())
		require.Contains(t, p.Stdout(), "Approved by "+bobID+".")
		require.Regexp(t, `State:\s+active\n`, p.Stdout())
		require.Empty(t, p.Stderr())
		require.Equal(t, id, alice.session("whoami").SessionID)
	})
	t.Run("denied", func(t *testing.T) {
		p, id := alice.waiting()
		bob.ok("sessions", "deny", id)
		require.Equal(t, 1, p.Exit(t, 30*time.Second), p.Report())
		require.Equal(t, "tether: session "+id+" was denied, or ended before it was approved (revoked, or pending past tetherd's --idle-timeout): run 'tether login --role breakglass' to ask again\n", p.Stderr())
	})
	t.Run("interrupted", func(t *testing.T) {
		p, id := alice.waiting()
		require.NoError(t, p.Signal(syscall.SIGINT))
		require.Equal(t, 130, p.Exit(t, 10*time.Second), p.Report())
		require.Equal(t, "tether: interrupted\n", p.Stderr())
		alice.fail(1, []string{"whoami"}, "session "+id+" (role breakglass) waits for approval")
	})
	t.Run("json", func(t *testing.T) {
		p, id := alice.waiting("-o", "json")
		bob.ok("sessions", "approve", id)
		require.Equal(t, 0, p.Exit(t, 30*time.Second), p.Report())
		dec := json.NewDecoder(strings.NewReader(p.Stdout()))
		dec.DisallowUnknownFields()
		var states []string
		for dec.More() {
			var sr api.SessionResponse
			require.NoError(t, dec.Decode(&sr), p.Stdout())
			require.Equal(t, id, sr.Session.SessionID)
			states = append(states, sr.Session.State)
		}
		require.Equal(t, []string{api.StatePending, api.StateActive}, states)
	})
}

// TestReadClaims: the claims shown of a cached token; anything else is no
// claims.
func TestReadClaims(t *testing.T) {
	enc := func(payload string) string {
		return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
	}
	c, ok := readClaims(enc(`{"jti":"abc","roles":["breakglass","ops"]}`))
	require.True(t, ok)
	require.Equal(t, pendingClaims{SessionID: "abc", Roles: []string{"breakglass", "ops"}}, c)
	c, ok = readClaims(enc(`{"jti":"abc","roles":["a\u001b[31m"]}`))
	require.True(t, ok)
	require.Empty(t, c.Roles, "no control codes to the terminal")
	for _, bad := range []string{"", "a.b", enc(`{}`), enc(`{"jti":"-x"}`), enc(`{"jti":"a b"}`), enc(`{"jti":"it's"}`), enc(`[1]`), "a.!!.c", enc(`{"jti":"` + strings.Repeat("a", maxTokenBytes) + `"}`)} {
		_, ok := readClaims(bad)
		require.False(t, ok, bad)
	}
}

// TestPrinterRoles: whoami and sessions list show roles, state and
// approvals.
func TestPrinterRoles(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	p := &printer{w: &b, now: func() time.Time { return now }}
	s := api.Session{
		SessionID: "abc", SPIFFEID: aliceID, CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(15 * time.Minute), IdleExpiresAt: now.Add(15 * time.Minute),
		Roles: []string{"breakglass", "ops"}, State: api.StateActive,
		Approvals: []api.Approval{{SPIFFEID: bobID, At: now.Add(-time.Minute)}, {SPIFFEID: daveID, At: now}},
	}
	require.NoError(t, p.session("", &s))
	require.Regexp(t, `Roles:\s+breakglass,ops\nState:\s+active\nApproved:\s+by `+regexp.QuoteMeta(bobID)+`, 1m00s ago\n\s+by `+regexp.QuoteMeta(daveID)+`, just now\n`, b.String())

	b.Reset()
	pending := s
	pending.SessionID, pending.State, pending.Approvals = "def", api.StatePending, pending.Approvals[:1]
	plain := api.Session{SessionID: "ghi", SPIFFEID: bobID, State: api.StateActive, Roles: []string{}}
	require.NoError(t, p.sessions([]api.Session{s, pending, plain}))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 4)
	require.Regexp(t, `^SESSION ID\s+SPIFFE ID\s+STATE\s+CREATED\s+LAST USED\s+EXPIRES\s+IDLE END\s+ROLES$`, lines[0])
	require.Regexp(t, `^abc\s+\S+\s+active\s.*\sbreakglass,ops$`, lines[1])
	require.Regexp(t, `^def\s+\S+\s+pending \(1 approval\)\s.*\sbreakglass,ops$`, lines[2])
	require.Regexp(t, `^ghi\s+\S+\s+active\s.*\s-$`, lines[3])
	col := strings.Index(lines[0], "ROLES")
	require.Equal(t, col, strings.Index(lines[1], "breakglass"), "aligned:\n%s", b.String())
}
