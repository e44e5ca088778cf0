// Package api holds tether's wire format: the JSON objects of the HTTP API, the
// error codes of the contract, and the paths and headers both sides use. It is
// shared by tetherd and by the Go client in pkg/client, so the two cannot drift.
//
// The package has no behaviour beyond encoding: it opens no connection and
// reads no file.
package api
