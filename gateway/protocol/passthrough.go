package protocol

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// Passthrough is embedded by the client connection's wrappers (the request head check here,
// parking, the connection caps): it passes on to the wrapped connection what fasthttp and the
// standard library look for beyond net.Conn, so that stacking wrappers loses none of it. A
// wrapper overrides what it changes. Copy and concurrency rules are the wrapped connection's.
type Passthrough struct{ net.Conn }

// NetConn returns the wrapped connection, for code that looks through wrappers (a TLS
// connection's verified client certificate, the socket under them).
func (c Passthrough) NetConn() net.Conn { return c.Conn }

// SetKeepAlive lets fasthttp's server.TCPKeepalive reach the TCP connection.
func (c Passthrough) SetKeepAlive(on bool) error {
	if k, ok := c.Conn.(interface{ SetKeepAlive(bool) error }); ok {
		return k.SetKeepAlive(on)
	}
	return nil
}

// SetKeepAlivePeriod: see SetKeepAlive.
func (c Passthrough) SetKeepAlivePeriod(d time.Duration) error {
	if k, ok := c.Conn.(interface{ SetKeepAlivePeriod(time.Duration) error }); ok {
		return k.SetKeepAlivePeriod(d)
	}
	return nil
}

// ReadFrom keeps the TCP connection's sendfile path for static files copied to the client.
func (c Passthrough) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// Transparent is Passthrough for a wrapper whose Read returns only bytes the wrapped
// connection returned, in order, and whose Write hands its bytes on unchanged (parking, the
// connection caps). Embedding it is that promise, and makes the socket under the wrapper
// reachable: a WebSocket tunnel may wait on its descriptor and read it (SyscallConn), and half
// close it (CloseWrite), and the request head check may write a response to it directly
// (Conn's write-and-wait, wait.go). A wrapper that keeps or changes bytes (TLS, a PROXY header
// reader, the request head check itself) embeds Passthrough instead.
type Transparent struct{ Passthrough }

// TransparentTo returns the Transparent part of a wrapper of c.
func TransparentTo(c net.Conn) Transparent { return Transparent{Passthrough{c}} }

// SyscallConn gives the socket's descriptor to code that waits on it or reads it directly (a
// WebSocket tunnel, so an idle tunnel holds no read buffer).
func (c Transparent) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite passes a WebSocket tunnel's half-close on; a connection that cannot half-close is
// closed.
func (c Transparent) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// transparent marks the promise above; only a type that embeds Transparent has it.
func (Transparent) transparent() {}

// transparentConn is a wrapper that embeds Transparent.
type transparentConn interface {
	net.Conn
	NetConn() net.Conn
	transparent()
}
