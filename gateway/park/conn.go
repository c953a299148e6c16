package park

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// States of a Conn's life between fasthttp and the Parker.
const (
	connServing int32 = iota // fasthttp serves it
	connParking              // its Read ended fasthttp's loop to park; the next Close parks it
	connParked               // in the Parker's set
	connClosed
)

// Conn is a connection of a parking listener. fasthttp's serving goroutine calls Read,
// SetReadDeadline and ConnState; Close may come from fasthttp's shutdown too. While parked,
// the Parker owns it (its fields below state are guarded by Parker.mu).
type Conn struct {
	net.Conn
	l     *Listener
	state atomic.Int32
	fd    int32 // the socket's descriptor, valid while the connection is open
	tls   bool  // closing sends close_notify (see Parker.closeParked)

	// Serving goroutine only.
	idle         bool      // fasthttp's StateIdle: at a request boundary, nothing buffered
	armed        bool      // the read deadline was shortened to the park delay
	noPark       bool      // no socket descriptor found: never parks
	idleDeadline time.Time // fasthttp's idle deadline while armed

	// Parker.mu while parked.
	key      uint32
	index    int
	deadline time.Time
}

// NetConn is the wrapped connection, for code that looks through wrappers (TLS state).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// ConnState follows fasthttp's view of the connection (Server.ConnState). Only StateIdle lets
// the next read park.
func (c *Conn) ConnState(st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateIdle:
		c.idle = true
	case fasthttp.StateActive:
		c.idle, c.armed = false, false
	}
	// The other states change nothing. StateHijacked is reported once the tunnel's goroutine
	// already reads the connection, which went through StateActive, never to be idle again. A
	// connection that parked is reported closed by the goroutine that served it, when it may
	// already be parked or serving again elsewhere.
}

// SetReadDeadline is where fasthttp arms the idle timeout at a request boundary: the deadline
// is shortened to the park delay, and fasthttp's is kept for the Parker.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.armed = false
	if c.idle && !c.noPark && !t.IsZero() {
		if park := time.Now().Add(c.l.after); park.Before(t) {
			c.idleDeadline, c.armed = t, true
			return c.Conn.SetReadDeadline(park)
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline: see SetReadDeadline (fasthttp clears both deadlines before a tunnel).
func (c *Conn) SetDeadline(t time.Time) error {
	c.armed = false
	return c.Conn.SetDeadline(t)
}

// Read returns end-of-file when the park delay passed with nothing read at a request boundary:
// fasthttp then ends its loop as for a client that went away, and its Close parks.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n == 0 && c.armed && err != nil {
		c.armed = false
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.idleDeadline) && c.state.CompareAndSwap(connServing, connParking) {
			return 0, io.EOF
		}
	}
	return n, err
}

// Close parks the connection when its Read ended fasthttp's loop for that, and closes it
// otherwise. A second Close of a parked connection (fasthttp's shutdown sweep) is a no-op.
func (c *Conn) Close() error {
	for {
		switch c.state.Load() {
		case connParking:
			if c.state.CompareAndSwap(connParking, connParked) {
				if err := c.l.p.park(c); err != nil {
					c.state.Store(connClosed)
					return c.Conn.Close()
				}
				return nil
			}
		case connParked:
			return nil
		case connServing:
			if c.state.CompareAndSwap(connServing, connClosed) {
				return c.Conn.Close()
			}
		default:
			return c.Conn.Close()
		}
	}
}

// SetKeepAlive lets fasthttp's server.TCPKeepalive reach the TCP connection.
func (c *Conn) SetKeepAlive(on bool) error {
	if k, ok := c.Conn.(interface{ SetKeepAlive(bool) error }); ok {
		return k.SetKeepAlive(on)
	}
	return nil
}

// SetKeepAlivePeriod: see SetKeepAlive.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	if k, ok := c.Conn.(interface{ SetKeepAlivePeriod(time.Duration) error }); ok {
		return k.SetKeepAlivePeriod(d)
	}
	return nil
}

// ReadFrom keeps the socket's sendfile path for static files.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// SyscallConn lets a WebSocket tunnel wait on the socket's descriptor and read it directly, so
// an idle tunnel holds no read buffer. Reading around Read is safe there: a hijacked connection
// went through StateActive and is never armed to park again.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite passes a WebSocket tunnel's half-close on.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// descriptor finds the socket under c's wrappers (TLS, PROXY protocol, the connection caps)
// and reports whether TLS is among them. ok is false when no socket is reachable: such a
// connection is never parked.
func descriptor(c net.Conn) (fd int32, isTLS, ok bool) {
	for range 16 {
		if _, t := c.(interface{ ConnectionState() tls.ConnectionState }); t {
			isTLS = true
		}
		if sc, s := c.(syscall.Conn); s {
			raw, err := sc.SyscallConn()
			if err != nil {
				return 0, false, false
			}
			fd = -1
			if err := raw.Control(func(d uintptr) { fd = int32(d) }); err != nil || fd < 0 {
				return 0, false, false
			}
			return fd, isTLS, true
		}
		switch w := c.(type) {
		case interface{ NetConn() net.Conn }:
			c = w.NetConn()
		case interface{ Raw() net.Conn }: // PROXY protocol (go-proxyproto)
			c = w.Raw()
		default:
			return 0, false, false
		}
	}
	return 0, false, false
}
