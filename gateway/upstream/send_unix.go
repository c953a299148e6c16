//go:build linux || darwin || freebsd || netbsd || openbsd

package upstream

import (
	"crypto/tls"
	"net"
	"syscall"
)

// rawConn returns the raw socket of a plain TCP connection, for send; nil for anything else
// (TLS, in-memory connections). It runs once per dial.
func rawConn(c net.Conn) syscall.RawConn {
	if _, ok := c.(*tls.Conn); ok {
		return nil
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// awaitAnswer is the RawConn.Read callback of send (bound once per connection as pc.await, so a
// request allocates nothing). The first call writes the pending request without blocking and
// asks to wait for readability; the next call, once the socket is readable, ends the wait
// without reading: the response parser reads through the connection's bufio.Reader. A send
// buffer too full to take everything leaves the rest in pending for send to finish.
func (pc *pconn) awaitAnswer(fd uintptr) bool {
	p := pc.out.pending
	if len(p) == 0 {
		return true
	}
	for len(p) > 0 {
		n, err := syscall.Write(int(fd), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			pc.out.pending = p
			return true
		case err != nil:
			pc.out.pending = nil
			pc.sendErr = err
			return true
		}
		p = p[n:]
	}
	pc.out.pending = nil
	return false
}
