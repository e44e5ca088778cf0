package main

import (
	"os"
	"testing"
)

// TestEndlessFilesRefused: an identity file that never ends (a device) is
// refused at a bound with one line naming it, before anything is sent,
// not read until the process runs out of memory.
func TestEndlessFilesRefused(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero here")
	}
	t.Parallel()
	s := newStack(t)
	alice := s.user(t, aliceID)
	alice.fail(1, []string{"--bundle", "/dev/zero", "whoami"}, "cannot load the trust bundle --bundle /dev/zero", "/dev/zero is larger than 4 MiB")
	alice.fail(1, []string{"--svid-key", "/dev/zero", "whoami"}, "cannot load the SVID", "/dev/zero is larger than 4 MiB")
	alice.fail(1, []string{"--svid-cert", "/dev/zero", "login"}, "cannot load the SVID", "/dev/zero is larger than 4 MiB")
}
