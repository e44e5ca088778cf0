package auth_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
)

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		name, pattern string
		match         []string
		noMatch       []string
		err           string
	}{
		{
			name: "ok/exact", pattern: "spiffe://example.org/admin/alice",
			match:   []string{"spiffe://example.org/admin/alice"},
			noMatch: []string{"spiffe://example.org/admin/alice/x", "spiffe://example.org/admin/alicex", "spiffe://example.org/admin", "spiffe://other.org/admin/alice"},
		},
		{
			name: "ok/below", pattern: "spiffe://example.org/admin/*",
			match:   []string{"spiffe://example.org/admin/alice", "spiffe://example.org/admin/a/b"},
			noMatch: []string{"spiffe://example.org/admin", "spiffe://example.org/administrator", "spiffe://example.org/adminx/a", "spiffe://evil.org/admin/alice", "spiffe://example.org.evil/admin/alice"},
		},
		{
			name: "ok/whole-trust-domain", pattern: "spiffe://example.org/*",
			match:   []string{"spiffe://example.org/a", "spiffe://example.org/admin/alice"},
			noMatch: []string{"spiffe://example.org", "spiffe://example.com/a"},
		},
		{name: "fail/empty", pattern: "", err: "pattern"},
		{name: "fail/no-scheme", pattern: "example.org/admin", err: "scheme"},
		{name: "fail/no-scheme-wildcard", pattern: "example.org/*", err: "scheme"},
		{name: "fail/trust-domain-only", pattern: "spiffe://example.org", err: "whole trust domain"},
		{name: "fail/partial-wildcard", pattern: "spiffe://example.org/adm*", err: "'*'"},
		{name: "fail/middle-wildcard", pattern: "spiffe://example.org/*/alice", err: "'*'"},
		{name: "fail/bare-star", pattern: "*", err: "'*'"},
		{name: "fail/uppercase-td", pattern: "spiffe://Example.org/admin", err: "trust domain"},
		{name: "fail/dot-segment", pattern: "spiffe://example.org/admin/../root", err: "dot segment"},
		{name: "fail/query", pattern: "spiffe://example.org/admin?x=1", err: "pattern"},
		{name: "fail/other-scheme", pattern: "https://example.org/admin", err: "scheme"},
		{name: "fail/trailing-slash", pattern: "spiffe://example.org/admin/", err: "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := auth.ParsePattern(tc.pattern)
			if tc.err != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.pattern, p.String())
			for _, s := range tc.match {
				require.True(t, p.Match(spiffeid.RequireFromString(s)), s)
			}
			for _, s := range tc.noMatch {
				id, err := spiffeid.FromString(s)
				if err != nil {
					continue // not even an ID
				}
				require.False(t, p.Match(id), s)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	var none auth.Policy
	require.False(t, none.Allows(spiffeid.RequireFromString("spiffe://example.org/admin/alice")), "the zero policy allows nobody")

	p, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/alice", "spiffe://ops.example.org/oncall/*"})
	require.NoError(t, err)
	require.True(t, p.Allows(spiffeid.RequireFromString("spiffe://example.org/admin/alice")))
	require.True(t, p.Allows(spiffeid.RequireFromString("spiffe://ops.example.org/oncall/bob")))
	require.False(t, p.Allows(spiffeid.RequireFromString("spiffe://example.org/admin/bob")))
	require.Equal(t, []string{"spiffe://example.org/admin/alice", "spiffe://ops.example.org/oncall/*"}, p.Strings())

	_, err = auth.ParsePolicy([]string{"spiffe://example.org/a", "bad"})
	require.ErrorContains(t, err, `"bad"`)
}

// TestPolicyMatcher: a Policy is a go-spiffe matcher, so it can authorize
// peers at the handshake of a go-spiffe mTLS configuration too.
func TestPolicyMatcher(t *testing.T) {
	p, err := auth.ParsePolicy([]string{"spiffe://example.org/admin/*"})
	require.NoError(t, err)
	m := p.Matcher()
	require.NoError(t, m(spiffeid.RequireFromString("spiffe://example.org/admin/alice")))
	require.ErrorContains(t, m(spiffeid.RequireFromString("spiffe://example.org/web")), "spiffe://example.org/web")
	require.NotNil(t, tlsconfig.AdaptMatcher(m))
}
