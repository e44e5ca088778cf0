package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/tetherproject/tether/internal/cli"
	"github.com/tetherproject/tether/pkg/api"
	"github.com/tetherproject/tether/pkg/client"
)

// usagef is a usage error (exit 2); failf a failure (exit 1) saying what
// to do.
func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

func failf(format string, args ...any) error { return cli.Failf(format, args...) }

// explain turns an error of the client into a failure a person can act on.
func (e *env) explain(err error) error {
	var ce *cli.Error
	if errors.As(err, &ce) {
		return err
	}
	server := e.client.ServerURL()
	var (
		apiErr *client.Error
		srvErr *client.ServerError
	)
	switch {
	case errors.As(err, &srvErr) && srvErr.Err == nil:
		return failf("refusing to talk to %s: it presented %s, not the expected --server-id %s", server, srvErr.Got, srvErr.Want)
	case errors.As(err, &srvErr):
		return failf("refusing to talk to %s: its certificate is not a valid SVID under --bundle (%v)", server, srvErr.Err)
	case errors.Is(err, client.ErrInvalidSessionID):
		return usagef("%s", strings.TrimPrefix(err.Error(), "client: "))
	case errors.Is(err, client.ErrUnusableToken):
		return failf("the token cache %s holds no usable session (not a token of tetherd): run 'tether login'", e.store.path)
	case errors.Is(err, client.ErrNoSession):
		return failf("not logged in to %s as %s: run 'tether login'", server, e.id)
	case errors.As(err, &apiErr):
		return e.explainAPI(apiErr)
	case errors.Is(err, syscall.ECONNREFUSED):
		return failf("cannot reach tetherd at %s: connection refused (is it running? check --server)", server)
	case errors.Is(err, context.DeadlineExceeded):
		return failf("tetherd at %s did not answer in time", server)
	case errors.Is(err, context.Canceled):
		return failf("interrupted")
	case strings.Contains(err.Error(), "remote error: tls:"):
		return failf("tetherd at %s refused this SVID (%s) in the TLS handshake: is it expired, or from a trust domain tetherd does not trust?", server, e.id)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return failf("cannot reach tetherd at %s: %v (check --server)", server, dnsErr)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return failf("cannot reach tetherd at %s: %v (check --server)", server, opErr.Err)
	}
	return failf("%s", strings.TrimPrefix(err.Error(), "client: "))
}

func (e *env) explainAPI(err *client.Error) error {
	switch err.Code {
	case api.CodeNotAdmin:
		return failf("not an admin: %s matches no --admin pattern of tetherd at %s", e.id, e.client.ServerURL())
	case api.CodeSessionEnded:
		return failf("the session has ended (it expired, sat idle, or was logged out or revoked): run 'tether login'")
	case api.CodeInvalidToken:
		return failf("tetherd does not accept the cached token (tetherd restarted, or the cache file is not %s's): run 'tether login'", e.id)
	case api.CodeCertificateRotated:
		return failf("the session is bound to another certificate of %s and could not be rebound: run 'tether login'", e.id)
	case api.CodeSessionLimit:
		return failf("tetherd refuses a new session: %s (log out elsewhere, or end every session of yours with 'tether logout --all')", err.Message)
	case api.CodeRateLimited:
		if err.RetryAfter > 0 {
			return failf("too many logins for %s in a short time: try again in %s", e.id, err.RetryAfter)
		}
		return failf("too many logins for %s in a short time: wait a little and try again", e.id)
	case api.CodeApprovalPending:
		return e.explainPending()
	case api.CodeForbidden:
		return failf("refused by tetherd at %s: %s", e.client.ServerURL(), err.Message)
	case api.CodeInternal:
		return failf("tetherd failed: %s (its log has the details)", err.Message)
	default:
		if err.Message != "" {
			return failf("tetherd answered %s: %s", err.Code, err.Message)
		}
		return failf("tetherd answered %s", err.Code)
	}
}
