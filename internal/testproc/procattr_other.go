//go:build unix && !linux

package testproc

import "syscall"

// procAttr puts a child in a process group of its own (there is no
// parent-death signal outside Linux).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
