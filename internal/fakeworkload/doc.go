// Package fakeworkload is a fake SPIFFE Workload API for tests: a gRPC server
// on a unix socket that implements FetchX509SVID with go-spiffe's public
// proto package and answers Unimplemented to everything else.
//
// A test sets the identity it hands out (SetSVID; several at once with
// SetSVIDs, as an agent does for a workload that several registration
// entries match), pushes a new one to every open stream (rotation), refuses
// with a gRPC status (SetError, as an agent without a matching registration
// entry answers PermissionDenied), and stops and starts the server on the
// same socket (the agent lost and back).
//
// Like a real agent, it refuses calls without the "workload.spiffe.io: true"
// security header. It is for tests only; nothing in tetherd imports it.
package fakeworkload
