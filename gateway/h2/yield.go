package h2

import (
	"crypto/tls"
	"net"
	"runtime"
)

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

// yieldingTLSConn keeps the TLS connection's state visible to x/net/http2, which checks the
// version and cipher suite a client negotiated through it.
type yieldingTLSConn struct {
	yieldingConn
	state interface{ ConnectionState() tls.ConnectionState }
}

func (c yieldingTLSConn) ConnectionState() tls.ConnectionState { return c.state.ConnectionState() }

var (
	_ net.Conn                                           = yieldingConn{}
	_ interface{ ConnectionState() tls.ConnectionState } = yieldingTLSConn{}
)

// yielding wraps c for x/net/http2.
func yielding(c net.Conn) net.Conn {
	if s, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return yieldingTLSConn{yieldingConn{c}, s}
	}
	return yieldingConn{c}
}
