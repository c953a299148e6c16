// Package h2 serves HTTP/2 to clients through the gateway's one request path. fasthttp speaks
// only HTTP/1.x, and the gateway terminates TLS itself (package listener), so HTTP/2 is split
// off at the listener: a Demux looks at each new connection once (its negotiated ALPN protocol,
// or on an h2c listener its first bytes) and hands HTTP/2 connections to a Server, everything
// else to fasthttp untouched. The Server runs golang.org/x/net/http2 on the connection and turns
// every stream into a fasthttp.RequestCtx that the same handler fasthttp calls serves: the same
// snapshot, router, policy chain and error mapping.
package h2

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// ALPN protocol identifier of HTTP/2 over TLS (RFC 9113, section 3.2).
const ProtoH2 = "h2"

// Preface is the HTTP/2 client connection preface (RFC 9113, section 3.4). A connection to an
// h2c listener that starts with it speaks HTTP/2 with prior knowledge.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// tlsConn is a server-side TLS connection that has not necessarily shaken hands yet.
type tlsConn interface {
	net.Conn
	Handshake() error
	ConnectionState() tls.ConnectionState
}

// Demux is a listener that serves HTTP/2 connections itself and passes every other connection
// on through Accept. It owns one goroutine, the accept loop, which ends when the inner listener
// is closed (Close), and one goroutine per connection until that connection is classified (and,
// for HTTP/2, until the connection ends). Classifying off the accept loop keeps one slow
// handshake from holding up the others.
type Demux struct {
	inner net.Listener
	h2    *Server
	// tls: connections are TLS (a *listener.Conn); HTTP/2 is chosen by ALPN. Otherwise HTTP/2
	// is chosen by the preface (h2c with prior knowledge).
	tls bool
	// timeout bounds the handshake or the wait for the first bytes.
	timeout func() time.Duration

	results   chan accepted
	done      chan struct{}
	closeOnce sync.Once
	startOnce sync.Once
}

type accepted struct {
	c   net.Conn
	err error
}

// NewDemux returns a listener serving HTTP/2 connections of inner with h2. With tls, inner's
// connections must be TLS connections (their handshake is run here); without, they are plain
// and HTTP/2 means prior knowledge. timeout is read for each connection.
func NewDemux(inner net.Listener, h2 *Server, tls bool, timeout func() time.Duration) *Demux {
	return &Demux{inner: inner, h2: h2, tls: tls, timeout: timeout,
		results: make(chan accepted), done: make(chan struct{})}
}

// Accept returns the next connection that is not HTTP/2.
func (d *Demux) Accept() (net.Conn, error) {
	d.startOnce.Do(func() { go d.acceptLoop() })
	select {
	case r := <-d.results:
		return r.c, r.err
	case <-d.done:
		return nil, net.ErrClosed
	}
}

// Close closes the inner listener; connections already handed out are not affected.
func (d *Demux) Close() error {
	err := net.ErrClosed
	d.closeOnce.Do(func() {
		close(d.done)
		err = d.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (d *Demux) Addr() net.Addr { return d.inner.Addr() }

func (d *Demux) acceptLoop() {
	for {
		c, err := d.inner.Accept()
		if err != nil {
			var ne net.Error
			temporary := errors.As(err, &ne) && ne.Timeout()
			select {
			case d.results <- accepted{err: err}:
			case <-d.done:
				return
			}
			if temporary {
				continue
			}
			return
		}
		go d.classify(c)
	}
}

// classify decides what c speaks and serves it or passes it on.
func (d *Demux) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(d.timeout()))
	var isH2 bool
	if d.tls {
		tc, ok := c.(tlsConn)
		if !ok {
			_ = c.Close()
			return
		}
		// The handshake fasthttp would have run on its first read, run here to learn the
		// protocol. Failures are counted by the listener's Conn.
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return
		}
		isH2 = tc.ConnectionState().NegotiatedProtocol == ProtoH2
	} else {
		var read []byte
		var err error
		isH2, read, err = readPreface(c)
		if err != nil && len(read) == 0 {
			_ = c.Close()
			return
		}
		if len(read) > 0 {
			// Bytes read to decide are given back to whoever reads next. A read error after
			// some bytes is left for that reader to meet again.
			c = &replayConn{Conn: c, pending: read}
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	if isH2 {
		d.h2.ServeConn(c)
		return
	}
	select {
	case d.results <- accepted{c: c}:
	case <-d.done:
		_ = c.Close()
	}
}

// readPreface reads from c until its bytes either differ from the HTTP/2 preface or are all of
// it. An HTTP/1.1 request differs within its first two bytes (no method starts with "PR"), so a
// short request is never waited on. The bytes read are returned either way.
func readPreface(c net.Conn) (isH2 bool, read []byte, err error) {
	buf := make([]byte, len(Preface))
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		if string(buf[n:n+m]) != Preface[n:n+m] {
			return false, buf[:n+m], nil
		}
		n += m
		if err != nil {
			return false, buf[:n], err
		}
	}
	return true, buf, nil
}

// replayConn gives back the bytes the demux read before its first Read.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn is the wrapped connection, for code that looks through wrappers.
func (c *replayConn) NetConn() net.Conn { return c.Conn }
