package server

import (
	"syscall"
	"unsafe"
)

// canPeek: sockReadable works here.
const canPeek = true

// sockReadable reports whether the socket fd has a byte to read, its end, or
// an error waiting, without taking anything off it: recv(2) with MSG_PEEK,
// not blocking. false (EAGAIN) makes syscall.RawConn.Read wait for the
// socket to become readable and ask again.
func sockReadable(fd uintptr) bool {
	var b [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, //nolint:gosec // G103: the kernel writes at most 1 byte into b
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}
