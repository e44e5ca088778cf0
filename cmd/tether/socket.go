package main

import (
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"
)

// checkSocket fails at once, naming the socket, when the Workload API
// address is a unix socket that is not there, is no socket, or has nobody
// listening on it, or may not be used by this user: the Workload API client would otherwise retry until
// --workload-api-timeout (10 s) and then blame a missing registration entry.
// Other addresses (tcp://) are left to the client.
func checkSocket(addr string) error {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "unix" || u.Host != "" || u.Path == "" {
		return nil
	}
	path := u.Path
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return failf("no Workload API at %s: %s does not exist (is the SPIRE agent running? check --workload-api or %s)", addr, path, envWorkloadAPI)
	case err != nil:
		return failf("cannot reach the Workload API at %s: %v (check --workload-api or %s)", addr, unwrapPath(err), envWorkloadAPI)
	case fi.Mode()&fs.ModeSocket == 0:
		return failf("no Workload API at %s: %s is not a socket (check --workload-api or %s)", addr, path, envWorkloadAPI)
	}
	// A socket left behind by an agent that has stopped refuses at once;
	// one being served accepts, and the client then talks to it.
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return failf("no Workload API at %s: nothing listens on %s (is the SPIRE agent running? check --workload-api or %s)", addr, path, envWorkloadAPI)
		case errors.Is(err, fs.ErrPermission):
			return failf("cannot reach the Workload API at %s: permission denied on %s (may this user reach the agent's socket?)", addr, path)
		}
		return nil // a busy or slow agent: the client waits for it
	}
	_ = conn.Close()
	return nil
}
