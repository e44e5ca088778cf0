// Package session keeps tether's admin sessions in memory and mints and checks
// their tokens.
//
// A session belongs to one SPIFFE ID and is bound to the SHA-256 fingerprint
// of one X.509 leaf certificate (RFC 8705 x5t#S256). Its token is a compact
// JWS (ES256) signed by a key made when the Manager is created and never
// written anywhere, so a process restart ends every session.
//
// The Manager is the policy: login, validation of the binding, absolute and
// idle expiry, caps, rate limits, rebind after certificate rotation,
// revocation, and the security-event log. Storage sits behind the small Store
// interface; MemoryStore is the in-process implementation, sharded so that
// validations only take a read lock on one shard and never wait behind logins,
// rebinds or revocations. Only the SHA-256 of each token is stored.
//
// The package speaks no HTTP; package auth binds it to TLS peers and requests.
package session
