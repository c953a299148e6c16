//go:build linux || darwin || freebsd || netbsd || openbsd

package websocket

import (
	"net"
	"syscall"
)

// socketOf returns c's descriptor when c exposes one (see End.Conn).
func socketOf(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}

// readRaw is the callback of src's RawConn.Read: a non-blocking read into the pump's buffer.
// When there is nothing to read it gives the buffer back before the wait for readability, and
// after the wait it returns without reading, so the buffer is taken outside the callback.
func (p *pump) readRaw(fd uintptr) bool {
	if p.buf == nil {
		return true
	}
	if p.readOnce(fd) {
		p.giveBack()
		return false
	}
	return true
}

// readNow is the callback of src's RawConn.Read in a burst (runPolled): one non-blocking read,
// never a wait.
func (p *pump) readNow(fd uintptr) bool {
	p.again = p.readOnce(fd)
	return true
}

// readOnce reads the socket into the buffer, after the frame header held back, without
// blocking: the result in p.n and p.rerr, or again when the socket had nothing.
func (p *pump) readOnce(fd uintptr) (again bool) {
	copy(p.buf[:], p.head[:p.have])
	for {
		n, err := syscall.Read(int(fd), p.buf[p.have:])
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return true
		}
		p.n, p.rerr = max(n, 0), err
		return false
	}
}
