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

	"github.com/archway-gateway/archway/gateway/protocol"
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
// the Parker owns it (its fields below state are guarded by Parker.mu). Once hijacked, a
// WebSocket tunnel calls Read, the deadlines and Close from goroutines of its own: the serving
// goroutine's fields are then only read.
//
// It is transparent (protocol.Transparent): its Read only turns a timeout into end-of-file. So
// a WebSocket tunnel may read the socket around it (a hijacked connection went through
// StateActive and is never armed to park again), and the request head check may write to it.
type Conn struct {
	protocol.Transparent
	l     *Listener
	state atomic.Int32
	fd    int32 // the socket's descriptor, valid while the connection is open
	tls   bool  // closing sends close_notify (see Parker.closeParked)

	// Serving goroutine only.
	idle         bool      // fasthttp's StateIdle: at a request boundary, nothing buffered
	armed        bool      // the read deadline was shortened to the park delay
	noPark       bool      // no socket descriptor found: never parks
	idleDeadline time.Time // fasthttp's idle deadline while armed
	// crowdArmed: the delay armed is CrowdedAfter; crowdParked: the connection once parked
	// after it, so it came back and is not parked early again (Listener.delay).
	crowdArmed, crowdParked bool

	// Parker.mu while parked.
	key      uint32
	index    int
	deadline time.Time
}

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
	// armed is only ever true on the serving goroutine, between a request boundary and the read
	// that follows; once a connection is hijacked (StateActive cleared it) a tunnel sets its
	// deadlines from any goroutine, so they must write nothing here.
	if c.armed {
		c.armed = false
	}
	if c.idle && !c.noPark && !t.IsZero() {
		delay, crowded := c.l.delay(c.crowdParked)
		if park := time.Now().Add(delay); park.Before(t) {
			c.idleDeadline, c.armed, c.crowdArmed = t, true, crowded
			return c.Conn.SetReadDeadline(park)
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline: see SetReadDeadline (fasthttp clears both deadlines before a tunnel).
func (c *Conn) SetDeadline(t time.Time) error {
	if c.armed {
		c.armed = false
	}
	return c.Conn.SetDeadline(t)
}

// Read returns end-of-file when the park delay passed with nothing read at a request boundary:
// fasthttp then ends its loop as for a client that went away, and its Close parks.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n == 0 && c.armed && err != nil {
		c.armed = false
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.idleDeadline) && c.state.CompareAndSwap(connServing, connParking) {
			c.crowdParked = c.crowdParked || c.crowdArmed
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
