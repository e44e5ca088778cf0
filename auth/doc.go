// Package auth binds tether's sessions to TLS peers.
//
// It holds the --admin and --introspector policy (Pattern, Policy), the mTLS
// server configuration (ServerTLSConfig: TLS 1.3 only, a client X.509 SVID
// required and verified on every handshake, resumed ones included), the
// extraction of the caller's SPIFFE ID and leaf fingerprint from a request
// (PeerFromRequest, which also refuses a leaf that expired while its
// connection stayed open), and the HTTP middleware (Middleware.RequireSession)
// that checks a bearer token against the caller's identity and leaf on every
// request and hands the handler the session.
//
// A service that wants sessions inside its own http.Server needs only this
// package and package session; see the Example.
package auth
