package session

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tetherproject/tether/pkg/api"
)

// Role is a privilege a session can hold, named by the operator (tetherd's
// --role flags). A session asks for roles at login; an identity gets a role
// only if Holders allows it.
type Role struct {
	Name string
	// Holders decides which SPIFFE IDs may hold the role (nil error: yes).
	// Required.
	Holders spiffeid.Matcher
	// TTL, if set, caps the life of a session holding the role, counted
	// from the session's creation.
	TTL time.Duration
	// Approvals is how many other identities must approve a session that
	// asks for the role before its token works (a two-person rule); zero
	// needs none.
	Approvals int
	// Approvers decides who may approve (never the requester). Required
	// when Approvals is set.
	Approvers spiffeid.Matcher
}

// elevated reports whether the role is granted only when asked for: it
// needs approval or shortens the session.
func (r *Role) elevated() bool { return r.Approvals > 0 || r.TTL > 0 }

// roleSet is the configured roles by name.
type roleSet map[string]*Role

func newRoleSet(roles []Role) (roleSet, error) {
	set := make(roleSet, len(roles))
	for i := range roles {
		r := &roles[i]
		switch {
		case r.Name == "":
			return nil, fmt.Errorf("session: a role has no name")
		case set[r.Name] != nil:
			return nil, fmt.Errorf("session: role %q is defined twice", r.Name)
		case r.Holders == nil:
			return nil, fmt.Errorf("session: role %q has no holders", r.Name)
		case r.TTL < 0 || r.Approvals < 0:
			return nil, fmt.Errorf("session: role %q: negative TTL or approvals", r.Name)
		case r.Approvals > 0 && r.Approvers == nil:
			return nil, fmt.Errorf("session: role %q needs approvals but has no approvers", r.Name)
		}
		set[r.Name] = r
	}
	return set, nil
}

// grant decides the roles of a new session of id: the ones asked for (each
// must be held by id), or, when none are asked for, every role id holds that
// is not elevated. It returns them sorted, with the approvals needed (the
// most any of them asks) and the shortest role TTL (0: none).
func (rs roleSet) grant(id spiffeid.ID, asked []string) ([]string, int, time.Duration, error) {
	var names []string
	if len(asked) == 0 {
		for name, r := range rs {
			if !r.elevated() && r.Holders(id) == nil {
				names = append(names, name)
			}
		}
	} else {
		for _, name := range asked {
			r := rs[name]
			if r == nil || r.Holders(id) != nil {
				return nil, 0, 0, &Error{Code: api.CodeForbidden, Reason: ReasonRoleNotHeld, Detail: fmt.Sprintf("%s may not hold role %q", id, name)}
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	var approvals int
	var ttl time.Duration
	for _, name := range names {
		r := rs[name]
		approvals = max(approvals, r.Approvals)
		if r.TTL > 0 && (ttl == 0 || r.TTL < ttl) {
			ttl = r.TTL
		}
	}
	return names, approvals, ttl, nil
}

// Approval is one approver's approval of a pending session.
type Approval struct {
	SPIFFEID spiffeid.ID
	At       time.Time
}

// grants is what a session holds beyond its binding: its roles and, while
// it waits for them, its approvals. It is nil for a session without roles.
type grants struct {
	roles []string // sorted; never changes

	mu        sync.Mutex
	needed    int // approvals still needed; 0: active
	approvals []Approval
}

func (g *grants) roleNames() []string {
	if g == nil {
		return nil
	}
	return g.roles
}

func (g *grants) pending() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.needed > 0
}

func (g *grants) snapshot() (roles []string, approvals []Approval, pending bool) {
	if g == nil {
		return nil, nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.roles, slices.Clone(g.approvals), g.needed > 0
}

// Decide records approver's decision on the pending session id: an approval
// counts once per approver, and the session turns active once it has as
// many as its roles need; a denial ends it (its token is then
// session_ended). The approver must be another identity, allowed by the
// approvers of every role of the session that needs approval. Refusals:
// not_found (no such live session), forbidden (not allowed, or the
// requester itself), bad_request (the session is not pending).
func (m *Manager) Decide(ctx context.Context, id string, approver Peer, approve bool) (Info, error) {
	r := m.live(m.store.ByID(id))
	if r == nil {
		return Info{}, reject(api.CodeNotFound, ReasonNoSuchSession)
	}
	g := r.grants
	if !g.pending() {
		return Info{}, &Error{Code: api.CodeBadRequest, Reason: ReasonNotPending, Detail: "the session is not waiting for approval"}
	}
	if approver.ID == r.Owner {
		m.denied(ctx, EventApprovalRefused, approver, r.ID, api.CodeForbidden, ReasonSelfApproval, slog.String("requester", r.Owner.String()))
		return Info{}, &Error{Code: api.CodeForbidden, Reason: ReasonSelfApproval, Detail: "a requester never approves its own session"}
	}
	for _, name := range g.roles {
		role := m.roles[name]
		if role.Approvals > 0 && role.Approvers(approver.ID) != nil {
			m.denied(ctx, EventApprovalRefused, approver, r.ID, api.CodeForbidden, ReasonNotApprover, slog.String("requester", r.Owner.String()), slog.String("role", name))
			return Info{}, &Error{Code: api.CodeForbidden, Reason: ReasonNotApprover, Detail: fmt.Sprintf("%s may not approve role %q", approver.ID, name)}
		}
	}
	attrs := []slog.Attr{slog.String("session_id", r.ID), slog.String("requester", r.Owner.String()), slog.Any("roles", g.roles)}
	if !approve {
		if m.end(ctx, r, CauseDenied) {
			m.event(ctx, slog.LevelWarn, "session.denied", approver, attrs...)
		}
		return m.info(r), nil
	}
	now := m.now()
	g.mu.Lock()
	counted := !slices.ContainsFunc(g.approvals, func(a Approval) bool { return a.SPIFFEID == approver.ID })
	if counted && g.needed > 0 {
		g.approvals = append(g.approvals, Approval{SPIFFEID: approver.ID, At: now.UTC()})
		g.needed--
	}
	active := g.needed == 0
	g.mu.Unlock()
	if counted {
		m.event(ctx, slog.LevelWarn, "session.approval", approver, attrs...)
	}
	if active {
		r.Touch(now.UnixNano()) // its idle clock starts when it can be used
		m.event(ctx, slog.LevelWarn, "session.approved", Peer{ID: r.Owner}, attrs...)
	}
	return m.info(r), nil
}
