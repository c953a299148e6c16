//go:build linux || darwin || freebsd || netbsd || openbsd

package protocol

import (
	"net"
	"syscall"
)

// socketBelow returns the raw socket under c when every wrapper between is transparent, or nil.
// It runs once per connection.
func socketBelow(c net.Conn) syscall.RawConn {
	for range 8 {
		switch w := c.(type) {
		case *net.TCPConn:
			raw, err := w.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		case transparentConn:
			c = w.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// awaitRequest is the RawConn.Read callback of write-and-wait (bound once per connection as
// c.w.await, so a request allocates nothing). With a response held it writes it without
// blocking and asks to wait; then, and at once when nothing is held, it reads the socket into
// c.w.into, asking to wait again while it is empty. A send buffer too full to take the whole
// response leaves the rest in c.w.pending for the ordinary write. A whole write is marked done
// at once, so that a Close from another goroutine need not wait for the next request.
func (c *Conn) awaitRequest(fd uintptr) bool {
	w := &c.w
	w.calls++
	if p := w.pending; len(p) > 0 {
		for len(p) > 0 {
			n, err := syscall.Write(int(fd), p)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				w.pending = p
				return true
			case err != nil:
				w.pending, w.werr = nil, err
				c.written()
				return true
			}
			p = p[n:]
		}
		w.pending = nil
		c.written()
		return false
	}
	for {
		n, err := syscall.Read(int(fd), w.into)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		w.got, w.n, w.rerr = true, max(n, 0), err
		return true
	}
}
