//go:build linux || darwin || freebsd || netbsd || openbsd

package upstream

import (
	"net"
	"syscall"
	"unsafe"
)

// socketFD returns the descriptor of a TCP or Unix connection, or -1 for anything else (a TLS
// or in-memory connection), whose idle state the kernel cannot be asked about directly.
// It runs once per dial; the descriptor stays valid until the connection is closed.
func socketFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if raw.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}

// idleConnDead asks the kernel, without blocking, whether an idle keep-alive connection is still
// usable: a peeked EOF means the upstream closed it (its keep-alive timeout ran out), an error
// means it was reset, and a readable byte is a response nobody asked for (bytes past a
// Content-Length, say) that would be read as the answer to the next request. Only "would block"
// means the connection is idle and open. One recvfrom system call; nothing escapes to the heap.
func idleConnDead(fd int) bool {
	var b [1]byte
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN && errno != syscall.EWOULDBLOCK
}
