// Package session keeps tether's admin sessions in memory and mints and checks
// their tokens.
//
// A session belongs to one SPIFFE ID and is bound to the SHA-256 fingerprint
// of one X.509 leaf certificate (RFC 8705 x5t#S256). Its token is a compact
// JWS (EdDSA: Ed25519) signed by a key (Key) made when the Manager is created and
// never written anywhere, so with the in-memory store a process restart ends
// every session.
//
// The Manager is the policy: login, validation of the binding, absolute and
// idle expiry, caps, rate limits, rebind after certificate rotation,
// revocation, and the security-event log. Storage sits behind the Store
// interface, built so that a shared engine can implement it: records are
// values, every change is a compare-and-swap on the record's version, an end
// or a rebind writes the old token's tombstone in the same step, and Fresh
// fences every call (a store that cannot prove its view current refuses).
// MemoryStore is the in-process implementation, sharded so that validations
// only take a read lock on one shard and never wait behind logins, rebinds or
// revocations; package etcdstore shares sessions between tetherd replicas and
// keeps a MemoryStore as each replica's local view. Only the SHA-256 of each
// token is stored; a TokenMemo (package auth keeps one per connection)
// remembers the last token a check through it accepted, so that the same
// token is compared, not hashed again.
//
// Tokens are recognised by their hash alone; no signature is ever verified.
// When a session ends (logout, revocation, idle) or a rebind replaces its
// token, the store keeps a tombstone of the old token's hash (owner, session
// ID, why) until TombstoneGrace (an hour) past the token's exp, so an
// owner who comes back soon after a session's absolute end still hears
// session_ended. A token that opens no live session is
// session_ended for its tombstone's owner and invalid_token for anyone else,
// as is a token without a tombstone. Every refusal is thus a hash and a map
// lookup or two: a stranger holding a stolen token cannot time whether its
// session is live. Tombstones are capped per SPIFFE ID and in all
// (Config.MaxTombstonesPerIdentity, MaxTombstones): beyond a cap the oldest
// is forgotten, and its token, still refused, gets invalid_token. So does a
// token whose tombstone has outlived its grace.
//
// Rebind moves a session only to a leaf whose NotBefore is strictly after the
// bound leaf's (Peer.NotBefore), so once rotated away, an older leaf can
// never take the session back.
//
// Check and Use.Commit separate checking a token from counting a use of its
// session: an HTTP layer commits only a request that succeeded, so failed
// requests do not keep a session alive. Validate is both at once.
//
// # Embedding
//
// A service that hosts sessions itself makes one Manager (NewManager with
// the service's own SPIFFE ID as Issuer, and optionally a Logger for the
// security events and a Registerer for the metrics), decides by itself who
// may log in and calls Login with the caller's Peer (SPIFFE ID, leaf
// fingerprint and validity), checks every request's token with Check and
// commits the use only when the request succeeded (or calls Validate, which
// does both), records its own refusals with Deny so they are logged and
// counted like the Manager's, and Closes the Manager at exit. Package auth
// does all of that for an http.Server, and package server is tether's own
// API on top of it.
//
// The package speaks no HTTP; package auth binds it to TLS peers and requests.
package session
