package h2

import (
	"bufio"
	"crypto/tls"
	"net"
	"runtime"
)

// forXNet is c as x/net/http2 is given it: its writes yield first (yieldingConn), and without
// TLS its reads go through a buffer (bufferedConn); a TLS connection keeps its state visible
// (yieldingTLSConn). The wrappers are values made once per connection.
func forXNet(c net.Conn) net.Conn {
	if s, ok := c.(tlsStater); ok {
		return yieldingTLSConn{yieldingConn{c}, s}
	}
	return bufferedConn{yieldingConn{c}, bufio.NewReaderSize(c, h2cReadBuffer)}
}

// yieldingConn is the connection as x/net/http2 writes to it: every write first lets the
// goroutines that are ready run. x/net's connection loop flushes its buffer whenever its queue of
// frames runs dry, and a stream handler that queues its response head or body wakes the loop at
// once (the scheduler runs a woken goroutine next), so with many streams in flight the loop
// would write once for each head and once for each body. Yielding before the write lets the
// other handlers that the same network poll woke queue their frames first; the loop, which
// waits for this write, then sends them all with its next flush (TestResponsesReadyTogether…:
// 100 responses in 2–7 writes instead of 101–200). The price is a pass through the scheduler
// per write, and a write waits for the goroutines already runnable, as an event loop that
// serves every ready event before it writes does.
type yieldingConn struct{ net.Conn }

func (c yieldingConn) Write(p []byte) (int, error) {
	runtime.Gosched()
	return c.Conn.Write(p)
}

// tlsStater is how x/net/http2 finds a connection's TLS state, to check the version and cipher
// suite the client negotiated.
type tlsStater interface{ ConnectionState() tls.ConnectionState }

// yieldingTLSConn keeps the TLS connection's state visible to x/net/http2. Its reads need no
// buffer: crypto/tls reads whole records into its own.
type yieldingTLSConn struct {
	yieldingConn
	state tlsStater
}

func (c yieldingTLSConn) ConnectionState() tls.ConnectionState { return c.state.ConnectionState() }

// h2cReadBuffer is the read buffer of an HTTP/2 connection without TLS: a few frames' worth of
// small requests in one read; a larger frame's payload is read straight into x/net's buffer.
const h2cReadBuffer = 4 << 10

// bufferedConn reads through a buffer. x/net/http2 reads each frame's 9-byte header and then its
// payload straight from the connection, which without TLS is two system calls per frame, and a
// GET is a frame (TestH2CFramesAreReadInFewCalls).
type bufferedConn struct {
	yieldingConn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var (
	_ net.Conn  = yieldingConn{}
	_ tlsStater = yieldingTLSConn{}
	_ net.Conn  = bufferedConn{}
)
