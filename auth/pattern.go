package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Pattern selects SPIFFE IDs: exactly one ID ("spiffe://td/path"), or every ID
// strictly below a path ("spiffe://td/path/*"). Matching compares the trust
// domain as a value and the path by whole segments.
type Pattern struct {
	id     spiffeid.ID // for a prefix pattern, the parent path (may be the trust domain alone)
	prefix bool
}

// ParsePattern parses a pattern. A pattern must name a trust domain and either
// a path or "/*"; "*" anywhere but as the whole last segment is refused.
func ParsePattern(s string) (Pattern, error) {
	base, prefix := strings.CutSuffix(s, "/*")
	if strings.Contains(base, "*") {
		return Pattern{}, fmt.Errorf("auth: pattern %q: '*' is allowed only as the whole last segment (spiffe://td/path/*)", s)
	}
	var (
		id  spiffeid.ID
		err error
	)
	if prefix && !strings.Contains(strings.TrimPrefix(base, "spiffe://"), "/") {
		var td spiffeid.TrustDomain
		td, err = spiffeid.TrustDomainFromString(base)
		if err == nil && !strings.HasPrefix(base, "spiffe://") {
			err = errors.New("scheme is missing or invalid")
		}
		id = td.ID()
	} else {
		id, err = spiffeid.FromString(base)
		if err == nil && id.Path() == "" {
			err = errors.New("names a whole trust domain: use spiffe://td/* to allow every ID in it, or name a path")
		}
	}
	if err != nil {
		return Pattern{}, fmt.Errorf("auth: pattern %q: %w", s, err)
	}
	return Pattern{id: id, prefix: prefix}, nil
}

// Match reports whether id is selected.
func (p Pattern) Match(id spiffeid.ID) bool {
	if !p.prefix {
		return id == p.id
	}
	if id.TrustDomain() != p.id.TrustDomain() {
		return false
	}
	rest, ok := strings.CutPrefix(id.Path(), p.id.Path())
	return ok && len(rest) > 1 && rest[0] == '/'
}

// String is the pattern as parsed.
func (p Pattern) String() string {
	if p.prefix {
		return p.id.String() + "/*"
	}
	return p.id.String()
}

// Policy is a set of patterns: it allows an ID that any pattern matches. The
// zero Policy allows nobody.
type Policy []Pattern

// ParsePolicy parses each pattern; the first bad one is the error.
func ParsePolicy(patterns []string) (Policy, error) {
	p := make(Policy, 0, len(patterns))
	for _, s := range patterns {
		pat, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		p = append(p, pat)
	}
	return p, nil
}

// Allows reports whether some pattern matches id.
func (p Policy) Allows(id spiffeid.ID) bool {
	for _, pat := range p {
		if pat.Match(id) {
			return true
		}
	}
	return false
}

// Matcher is the policy as a go-spiffe spiffeid.Matcher: nil for an ID the
// policy allows, an error naming the ID otherwise. tlsconfig.AdaptMatcher
// turns it into a tlsconfig.Authorizer, to enforce the policy at the TLS
// handshake of a go-spiffe mTLS configuration.
func (p Policy) Matcher() spiffeid.Matcher {
	return func(id spiffeid.ID) error {
		if p.Allows(id) {
			return nil
		}
		return fmt.Errorf("auth: %s matches no pattern of the policy", id)
	}
}

// Strings lists the patterns.
func (p Policy) Strings() []string {
	out := make([]string, len(p))
	for i, pat := range p {
		out[i] = pat.String()
	}
	return out
}
