// Command e2e is tether's end-to-end load comparison (issue 14): tetherd,
// the real binary, against a plain TLS 1.3 mTLS baseline server and a
// JWT-SVID peer server, each a process of its own on loopback, under a load
// client of our own that keeps its connections alive.
//
//	go build -o /tmp/tetherd ./cmd/tetherd && go run ./bench/e2e -tetherd /tmp/tetherd
//
// The servers do the same TLS work: TLS 1.3 only, a client X.509 SVID
// required and verified against the trust bundle in VerifyConnection
// (auth.ServerTLSConfig, tetherd's), HTTP/1.1, net/http with tetherd's
// limits. The baseline answers a canned JSON the size of tetherd's session
// object and checks nothing; the JWT-SVID peer validates a JWT-SVID from the
// Authorization header of every request with go-spiffe's
// jwtsvid.ParseAndValidate (ES256), then answers the same canned JSON.
// tetherd answers GET /v1/sessions/self with a session token. A fourth side,
// basetoken, sends a second baseline process tetherd's very request, token
// included (the baseline ignores it): what carrying the token costs. Each
// server process serves one side, so each is busy in one slice of a round
// and idle in the others, as tetherd is.
//
// Two phases, each in rounds of short slices interleaved so that drift on a
// shared machine hits every side alike: requests (each side in turn, over
// its kept-alive connections) and logins (a new TCP connection and a full
// TLS 1.3 handshake per op, no resumption, then POST /v1/sessions to tetherd
// or a POST the baseline answers with a canned JSON the size of a login's).
// Every slice prints one line in the format of Go benchmarks:
//
//	BenchmarkE2ERequest/tetherd  N  NS ns/op  S server-cpu-ns/op  C client-cpu-ns/op
//
// where ns/op is the slice's time over its answers (1/throughput, at the
// load's concurrency) and server-cpu-ns/op the server process's CPU time
// (user and system, from /proc/PID/stat, whole process) over its answers.
// A summary of the ratios, medians of the rounds' with their spread, ends
// the run. bench/run runs it and writes BENCHMARKS.md.
//
// The run is bounded: -rounds and -slice are capped, and -timeout ends it
// (children included) whatever happens.
package main
