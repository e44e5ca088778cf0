package main

// Roles (issue 13): --role NAME=PATTERN[,PATTERN...], --role-ttl NAME=DUR,
// --role-approvals NAME=N and --role-approvers NAME=PATTERN[,...]. Each is a
// repeatable flag of NAME=VALUE entries (roleFlag); check turns them into
// session.Roles (buildRoles).

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/session"
)

// roleName is what a role may be called: it appears in flags
// (NAME=VALUE), on the CLI (tether login --role NAME), in tokens and logs.
var roleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// roleFlag is a repeatable flag of NAME=VALUE entries, one role each; parse
// checks a VALUE. A role given twice in one flag is refused: its patterns
// go in one entry, NAME=A,B.
//
// In a TETHERD_ variable, entries are separated by commas like those of
// every repeatable flag, and since a pattern list has commas too, a part
// with '=' starts a new entry and a part without one is one more pattern of
// the entry before: TETHERD_ROLE=ops=spiffe://td/a/*,spiffe://td/b,audit=spiffe://td/c
// is --role ops=spiffe://td/a/*,spiffe://td/b --role audit=spiffe://td/c.
// No SPIFFE ID holds an '=', so the rule is never ambiguous.
type roleFlag struct {
	entries []string // as given, NAME=VALUE
	names   []string // the entries' names, in order
	values  []string // the entries' values
	parse   func(string) error
	kind    string // what VALUE is, for --help's type column
}

var (
	_ pflag.Value      = (*roleFlag)(nil)
	_ pflag.SliceValue = (*roleFlag)(nil)
)

func newRoleFlag(kind string, parse func(string) error) *roleFlag {
	return &roleFlag{kind: kind, parse: parse}
}

// Set adds one NAME=VALUE entry.
func (f *roleFlag) Set(entry string) error {
	name, value, ok := strings.Cut(entry, "=")
	switch {
	case !ok:
		return fmt.Errorf("%q is not NAME=%s", entry, f.kind)
	case !roleName.MatchString(name):
		return fmt.Errorf("%q: a role name is 1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or digit", name)
	case slices.Contains(f.names, name):
		return fmt.Errorf("role %q is given twice: give it once, as %s=%s", name, name, f.kind)
	}
	if err := f.parse(value); err != nil {
		return fmt.Errorf("role %s: %w", name, err)
	}
	f.entries = append(f.entries, entry)
	f.names = append(f.names, name)
	f.values = append(f.values, value)
	return nil
}

// String is the entries as pflag shows a list, [a=x,b=y]; "" for none, so
// that --help shows no default.
func (f *roleFlag) String() string {
	if len(f.entries) == 0 {
		return ""
	}
	return "[" + strings.Join(f.entries, ",") + "]"
}

// Type names the value in --help.
func (f *roleFlag) Type() string { return "NAME=" + f.kind }

// Append adds an entry (pflag.SliceValue).
func (f *roleFlag) Append(entry string) error { return f.Set(entry) }

// Replace sets the entries anew (pflag.SliceValue).
func (f *roleFlag) Replace(entries []string) error {
	*f = roleFlag{kind: f.kind, parse: f.parse}
	for _, e := range entries {
		if err := f.Set(e); err != nil {
			return err
		}
	}
	return nil
}

// GetSlice is the entries as given (pflag.SliceValue; tetherd.config logs
// them).
func (f *roleFlag) GetSlice() []string { return slices.Clone(f.entries) }

// splitEnv splits a TETHERD_ variable's value into entries (see roleFlag).
func (f *roleFlag) splitEnv(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case strings.Contains(part, "=") || len(out) == 0:
			out = append(out, part)
		default:
			out[len(out)-1] += "," + part
		}
	}
	return out
}

// value is the value given for role name, and whether one was.
func (f *roleFlag) value(name string) (string, bool) {
	if i := slices.Index(f.names, name); i >= 0 {
		return f.values[i], true
	}
	return "", false
}

// roleFlags are the four flags of roles.
type roleFlags struct {
	holders, ttl, approvals, approvers *roleFlag
}

func (r *roleFlags) register(f *pflag.FlagSet) {
	r.holders = newRoleFlag("PATTERN[,PATTERN...]", parsePatterns)
	r.ttl = newRoleFlag("DUR", func(v string) error { _, err := parseRoleTTL(v); return err })
	r.approvals = newRoleFlag("N", func(v string) error { _, err := parseApprovals(v); return err })
	r.approvers = newRoleFlag("PATTERN[,PATTERN...]", parsePatterns)
	f.Var(r.holders, "role", "identities matching a pattern (same syntax as --admin) may hold role NAME; repeatable, one role each. A plain login gets the roles that need no approval and have no --role-ttl; others are asked for (tether login --role NAME)")
	f.Var(r.ttl, "role-ttl", "sessions holding role NAME end DUR after they began, at most (at most --session-ttl); repeatable")
	f.Var(r.approvals, "role-approvals", "a session asking for role NAME waits for N approvals by other identities (two-person rule; 0: none); repeatable")
	f.Var(r.approvers, "role-approvers", "who may approve role NAME (default: any --admin); never the requester; repeatable")
}

func parsePatterns(v string) error {
	_, err := rolePolicy(v)
	return err
}

// rolePolicy parses a comma-separated list of patterns.
func rolePolicy(v string) (auth.Policy, error) {
	var patterns []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			patterns = append(patterns, p)
		}
	}
	if len(patterns) == 0 {
		return nil, fmt.Errorf("no pattern: give spiffe://td/path or spiffe://td/path/*")
	}
	p, err := auth.ParsePolicy(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "auth: "))
	}
	return p, nil
}

func parseRoleTTL(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (15m, 1h30m)", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: must be positive", v)
	}
	return d, nil
}

// maxApprovals bounds --role-approvals: more people than any team would
// ask, far below what could overflow anything.
const maxApprovals = 100

func parseApprovals(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", v)
	}
	if n < 0 || n > maxApprovals {
		return 0, fmt.Errorf("%d: give 0 to %d", n, maxApprovals)
	}
	return n, nil
}

// roleSpec is a role as tetherd runs it: the session.Role and the patterns
// it was made of, for the log.
type roleSpec struct {
	role                session.Role
	holders, approvers  auth.Policy
	approversFromAdmins bool
}

// build checks the role flags against each other and against admins (the
// --admin policy, dev mode's included), and returns the roles in the order
// of --role. Every error is a usage error naming its setting as name does
// (options.name: the flag, the variable or the file's line and key).
//
// Beyond each value's own syntax (checked as it is set): a role of
// --role-ttl, --role-approvals or --role-approvers must be a --role; a role
// TTL can only shorten --session-ttl; approvers go with approvals; every
// holder and approver pattern must be able to match an --admin (only admins
// log in, and approving takes a session); and a role must be approvable: if
// its approvers are exact IDs, there must be enough of them besides any
// requester.
func (r *roleFlags) build(admins auth.Policy, sessionTTL time.Duration, setting func(flag string) string) ([]roleSpec, error) {
	for _, f := range []struct {
		flag string
		v    *roleFlag
	}{{"role-ttl", r.ttl}, {"role-approvals", r.approvals}, {"role-approvers", r.approvers}} {
		for _, name := range f.v.names {
			if !slices.Contains(r.holders.names, name) {
				return nil, usagef("%s: no role %q: define it with --role %s=PATTERN[,PATTERN...]", setting(f.flag), name, name)
			}
		}
	}
	specs := make([]roleSpec, 0, len(r.holders.names))
	for i, name := range r.holders.names {
		s := roleSpec{role: session.Role{Name: name}}
		var err error
		if s.holders, err = rolePolicy(r.holders.values[i]); err != nil {
			return nil, usagef("%s: role %s: %v", setting("role"), name, err) // checked when set
		}
		if err := reachesAdmins("role", setting, name, s.holders, admins); err != nil {
			return nil, err
		}
		s.role.Holders = s.holders.Matcher()
		if v, ok := r.ttl.value(name); ok {
			s.role.TTL, _ = parseRoleTTL(v) // checked when set
			if s.role.TTL > sessionTTL {
				return nil, usagef("%s: role %s: %s is longer than --session-ttl %s: a role's TTL only shortens a session; give at most %s", setting("role-ttl"), name, s.role.TTL, sessionTTL, sessionTTL)
			}
		}
		if v, ok := r.approvals.value(name); ok {
			s.role.Approvals, _ = parseApprovals(v) // checked when set
		}
		v, given := r.approvers.value(name)
		switch {
		case given && s.role.Approvals == 0:
			return nil, usagef("%s: role %s needs no approval: give --role-approvals %s=N to ask for N approvals", setting("role-approvers"), name, name)
		case given:
			if s.approvers, err = rolePolicy(v); err != nil {
				return nil, usagef("%s: role %s: %v", setting("role-approvers"), name, err) // checked when set
			}
			if err := reachesAdmins("role-approvers", setting, name, s.approvers, admins); err != nil {
				return nil, err
			}
		case s.role.Approvals > 0:
			s.approvers, s.approversFromAdmins = admins, true
		}
		if s.role.Approvals > 0 {
			if err := approvable(setting("role-approvals"), name, s.role.Approvals, s.holders, s.approvers); err != nil {
				return nil, err
			}
			s.role.Approvers = s.approvers.Matcher()
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// reachesAdmins checks that every pattern of p (of the flag --role or
// --role-approvers, named in an error by setting) can match an --admin: a
// pattern that cannot names nobody who could log in.
func reachesAdmins(flag string, setting func(string) string, role string, p, admins auth.Policy) error {
	for _, pat := range p {
		if !slices.ContainsFunc(admins, func(a auth.Pattern) bool { return overlap(pat, a) }) {
			what := "hold"
			if flag == "role-approvers" {
				what = "approve"
			}
			return usagef("%s: role %s: %s matches no --admin pattern, and only admins log in: nobody it names could %s the role", setting(flag), role, pat, what)
		}
	}
	return nil
}

// overlap reports whether some SPIFFE ID matches both patterns.
func overlap(a, b auth.Pattern) bool {
	ida, pa, oka := patternBase(a)
	idb, pb, okb := patternBase(b)
	switch {
	case !oka || !okb: // never for a parsed pattern; the manager decides anyway
		return true
	case !pa && !pb:
		return ida == idb
	case !pa:
		return b.Match(ida)
	case !pb:
		return a.Match(idb)
	default: // both prefixes: one is within the other
		return ida == idb || a.Match(idb) || b.Match(ida)
	}
}

// patternBase is the ID a pattern names, and whether it means the IDs
// strictly below it (for spiffe://td/*, the trust domain's ID). ok is false
// only for a pattern auth.ParsePattern would not have made.
func patternBase(p auth.Pattern) (id spiffeid.ID, prefix, ok bool) {
	s, prefix := strings.CutSuffix(p.String(), "/*")
	id, err := spiffeid.FromString(s)
	return id, prefix, err == nil
}

// approvable checks, where it can be known (approvers that are exact IDs),
// that a session asking for the role can get its approvals: enough
// approvers, and enough besides a requester that is one of them. An error
// names the setting of --role-approvals as approvals.
func approvable(approvals, name string, needed int, holders, approvers auth.Policy) error {
	var exact []spiffeid.ID
	for _, pat := range approvers {
		id, prefix, ok := patternBase(pat)
		if prefix || !ok {
			return nil // any number of identities may match
		}
		if !slices.Contains(exact, id) {
			exact = append(exact, id)
		}
	}
	if len(exact) < needed {
		return usagef("%s: role %s needs %d %s but --role-approvers allows %d %s: it could never be approved", approvals, name, needed, plural(needed, "approval", "approvals"), len(exact), plural(len(exact), "identity", "identities"))
	}
	if len(exact) == needed {
		for _, id := range exact {
			if holders.Allows(id) {
				return usagef("%s: role %s needs %d %s from the %d %s of --role-approvers, but %s may hold the role too and never approves its own session: a session of %s could never be approved", approvals, name, needed, plural(needed, "approval", "approvals"), needed, plural(needed, "identity", "identities"), id, id)
			}
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// sessionRoles is the roles as the session manager takes them.
func sessionRoles(specs []roleSpec) []session.Role {
	out := make([]session.Role, len(specs))
	for i, s := range specs {
		out[i] = s.role
	}
	return out
}

// logRoles is the roles as tetherd.started logs them: by name, each with
// its holders, whether a plain login gets it, its TTL if any, and the
// approvals it needs and who may give them.
func logRoles(specs []roleSpec) slog.Attr {
	attrs := make([]any, 0, len(specs))
	for _, s := range specs {
		r := []any{
			slog.Any("holders", s.holders.Strings()),
			slog.Bool("default", s.role.TTL == 0 && s.role.Approvals == 0),
		}
		if s.role.TTL > 0 {
			r = append(r, slog.Duration("ttl", s.role.TTL))
		}
		r = append(r, slog.Int("approvals", s.role.Approvals))
		if s.role.Approvals > 0 {
			approvers := slog.Any("approvers", s.approvers.Strings())
			if s.approversFromAdmins {
				r = append(r, approvers, slog.String("approvers_from", "--admin"))
			} else {
				r = append(r, approvers)
			}
		}
		attrs = append(attrs, slog.Group(s.role.Name, r...))
	}
	return slog.Group("roles", attrs...)
}
