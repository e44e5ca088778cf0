// Package server is tetherd's HTTP API on top of packages session and auth:
// one routing table for the contract's calls, the JSON answers, the bounded
// request reading, and the plain-HTTP health and metrics endpoints. A service
// embedding sessions may mount Handler in its own mux.
package server
