// Package client is the Go client of tetherd, the issuer of admin sessions
// bound to SPIFFE identities. The tether CLI is built on it, and a service
// connected to the SPIFFE Workload API can use it with its X509Source.
//
// A Client talks to one tetherd over mutual TLS 1.3. It presents the X.509
// SVID of an x509svid.Source (fetched again at every TLS handshake, so a
// rotated SVID is picked up) and refuses to talk to a server whose SVID does
// not chain to the x509bundle.Source or whose SPIFFE ID is not exactly the
// one it was given.
//
// The session token is kept in a TokenStore (in memory unless WithTokenStore
// says otherwise) and is attached to the typed calls (Whoami, List,
// Revoke...) and to any request sent with Client.Do, the one way to send a
// request of one's own. Both recover once, never in a loop, from the two
// ends a session meets in normal life:
//
//   - certificate_rotated: the SVID rotated and the session is bound to the
//     old leaf; the client rebinds the session to the new leaf
//     (POST /v1/sessions/self/rebind) and retries. If tetherd refuses the
//     rebind with bad_request (the leaf presented now is not strictly newer
//     than the bound one: two leaves of the same second, or an older SVID
//     back in use), no rebind can ever succeed from it: the client logs in
//     anew instead (unless WithAutoLogin(false)), and the old session, bound
//     to a leaf no longer presented, idles out.
//   - session_ended (or invalid_token, which tetherd answers after a restart):
//     the client logs in again (unless WithAutoLogin(false)) and retries.
//   - insufficient_user_authentication (a service hosting sessions asks, for
//     one call, for a login younger than its max_age: auth.WithFreshLogin,
//     RFC 9470): the client logs in again, which is that fresh login (unless
//     WithAutoLogin(false)), and retries; the older session idles out.
//
// A stored token that cannot be a token (see UsableToken) is never sent: it
// is treated as no session.
//
// Only requests whose body can be sent again (no body, or GetBody set, as
// http.NewRequest does for in-memory bodies) are retried.
//
// Roles: LoginRoles asks for roles beyond the identity's default ones. A
// role that needs approvals (a two-person rule) makes the session pending,
// and tetherd refuses its token with 403 approval_pending until other
// identities allowed by the role Approve it; one Deny ends it. The client
// returns approval_pending to its caller as an *Error, once, like any 403:
// it neither retries nor logs in around it, as only someone else can change
// the answer, and a new login would only start another pending session.
// Whoami tells when the session is active.
//
// The token goes to tetherd and nowhere else: a request to another host is
// refused, and the client never follows a redirect. Any 3xx answer, to any
// request (a typed call, a login or rebind, an introspection, Do), is an
// *Error with Code CodeUnexpectedResponse and the 3xx Status.
//
// tetherd's refusals are returned as *Error (the code, the message, the HTTP
// status and any Retry-After), so callers branch on the code with errors.Is
// or errors.As:
//
//	if errors.Is(err, &api.Error{Code: api.CodeNotAdmin}) { … }
//	var e *client.Error
//	if errors.As(err, &e) && e.RetryAfter > 0 { … }
//
// A token never appears in an error, a log line or a String method. It is
// worth nothing without the SVID's private key: tetherd accepts it only over
// mTLS from the leaf it is bound to.
package client
