package testproc

import "syscall"

// procAttr puts a child in a process group of its own and kills it if the
// test process dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
