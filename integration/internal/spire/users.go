package spire

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// EnsureUser returns the uid and gid of the Linux user name, creating the user
// (no home folder, no login shell: useradd -M -s /usr/sbin/nologin) when it
// does not exist. It needs root to create. Workload identities in the suite
// are such users: the agent's unix attestor selects them by unix:uid.
func EnsureUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		out, runErr := exec.Command("useradd", "-M", "-s", "/usr/sbin/nologin", name).CombinedOutput()
		if runErr != nil {
			return 0, 0, fmt.Errorf("spire: useradd %s: %w: %s", name, runErr, strings.TrimSpace(string(out)))
		}
		u, err = user.Lookup(name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("spire: user %s: %w", name, err)
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, fmt.Errorf("spire: user %s: uid %q: %w", name, u.Uid, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, fmt.Errorf("spire: user %s: gid %q: %w", name, u.Gid, err)
	}
	return uid, gid, nil
}

// UIDSelector is the unix workload attestor's selector for uid.
func UIDSelector(uid int) string { return "unix:uid:" + strconv.Itoa(uid) }
