package auth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherproject/tether/auth"
	"github.com/tetherproject/tether/pkg/api"
)

// TestBearerTokenAlphabet: a token is refused as invalid_token exactly when
// one of its bytes is outside the compact JWS alphabet (base64url and the
// dot), whichever byte it is and wherever it stands.
func TestBearerTokenAlphabet(t *testing.T) {
	jws := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 470} {
		for pos := range min(n, 9) {
			for c := range 256 {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				if pos == 0 && c == ' ' {
					continue // leading spaces separate the scheme from the token
				}
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header["Authorization"] = []string{"Bearer " + string(b)}
				tok, err := auth.BearerToken(r)
				if jws(byte(c)) {
					require.NoError(t, err, "byte %#x at %d of %d", c, pos, n)
					require.Equal(t, string(b), tok)
				} else {
					require.ErrorIs(t, err, &api.Error{Code: api.CodeInvalidToken}, "byte %#x at %d of %d", c, pos, n)
				}
			}
		}
	}
}
