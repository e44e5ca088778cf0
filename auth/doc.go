// Package auth binds tether's sessions to TLS peers.
//
// It holds the --admin and --introspector policy (Pattern, Policy), the mTLS
// server configuration (ServerTLSConfig: TLS 1.3 only, a client X.509 SVID
// required and verified on every handshake, resumed ones included), the
// extraction of the caller's SPIFFE ID and leaf fingerprint from a request
// (PeerFromRequest, which also refuses a leaf that expired while its
// connection stayed open, and one that is not an X.509-SVID client
// certificate), and the HTTP middleware (Middleware.RequireSession) that
// checks a bearer token against the caller's identity and leaf on every
// request and hands the handler the session: in the request's context
// (CallerFrom), or, with RequireSessionFunc and RequirePeerFunc, as an
// argument lent for the call, which spares a copy of the request (tether's
// own API is served so).
//
// A service that wants sessions inside its own http.Server needs only this
// package and package session (package server adds tether's own login,
// logout and rebind routes, which the Example mounts as they are); see the
// Example, which outside programs can copy whole. It gives the Middleware its
// trust bundles (Middleware.Bundles, typically the workloadapi.X509Source),
// so that an open connection is verified again whenever the bundle changes;
// without them the Middleware accepts only peers that the TLS layer itself
// verified, and refuses every request otherwise, so an http.Server left with
// tls.RequireAnyClientCert cannot end up trusting any certificate. Refusals
// are answered in tether's JSON error format unless Middleware.OnError says
// otherwise, and are logged and counted by the session Manager. A Policy is
// also a go-spiffe matcher (Policy.Matcher), to authorize peers at the
// handshake of a go-spiffe mTLS configuration.
package auth
