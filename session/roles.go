package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// Decide records approver's decision on the pending session id: an approval
// counts once per approver, and the session turns active once it has as
// many as its roles need; a denial ends it (its token is then
// session_ended). The approver must be another identity, allowed by the
// approvers of every role of the session that needs approval. Refusals:
// not_found (no such live session), forbidden (not allowed, or the
// requester itself), bad_request (the session is not pending).
func (m *Manager) Decide(ctx context.Context, id string, approver Peer, approve bool) (Info, error) {
	if err := m.store.Fresh(); err != nil {
		return Info{}, err
	}
	for {
		r, ok := m.liveByID(id)
		if !ok {
			return Info{}, reject(api.CodeNotFound, ReasonNoSuchSession)
		}
		if !r.Pending() {
			return Info{}, &Error{Code: api.CodeBadRequest, Reason: ReasonNotPending, Detail: "the session is not waiting for approval"}
		}
		if approver.ID == r.Owner {
			m.denied(ctx, EventApprovalRefused, approver, r.ID, api.CodeForbidden, ReasonSelfApproval, slog.String("requester", r.Owner.String()))
			return Info{}, &Error{Code: api.CodeForbidden, Reason: ReasonSelfApproval, Detail: "a requester never approves its own session"}
		}
		for _, name := range r.Roles {
			role := m.roles[name]
			if role.Approvals > 0 && role.Approvers(approver.ID) != nil {
				m.denied(ctx, EventApprovalRefused, approver, r.ID, api.CodeForbidden, ReasonNotApprover, slog.String("requester", r.Owner.String()), slog.String("role", name))
				return Info{}, &Error{Code: api.CodeForbidden, Reason: ReasonNotApprover, Detail: fmt.Sprintf("%s may not approve role %q", approver.ID, name)}
			}
		}
		attrs := []slog.Attr{slog.String("session_id", r.ID), slog.String("requester", r.Owner.String()), slog.Any("roles", r.Roles)}
		if !approve {
			ended, err := m.end(ctx, r, CauseDenied)
			if err != nil {
				return Info{}, err
			}
			if ended {
				m.event(ctx, slog.LevelWarn, "session.denied", approver, attrs...)
			}
			return m.info(&r), nil
		}
		if slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.SPIFFEID == approver.ID }) {
			return m.info(&r), nil // an approval counts once
		}
		now := m.now()
		next := r
		next.Approvals = append(slices.Clip(r.Approvals), Approval{SPIFFEID: approver.ID, At: now.UTC()})
		next.Needed--
		if next.Needed == 0 {
			next.LastUsed = max(r.LastUsed, now.UnixNano()) // its idle clock starts when it can be used
		}
		err := m.store.Update(ctx, r, next, nil)
		if errors.Is(err, ErrConflict) {
			continue // another approver, a use or an end came first: decide again on what is now
		}
		if err != nil {
			return Info{}, err
		}
		m.event(ctx, slog.LevelWarn, "session.approval", approver, attrs...)
		if !next.Pending() {
			m.event(ctx, slog.LevelWarn, "session.approved", Peer{ID: r.Owner}, attrs...)
		}
		return m.info(&next), nil
	}
}
