package protocol

import (
	"errors"
	"io"
	"net"
	"time"
)

// ErrBareLF: a line of the request head (request line or header field) ends in LF without CR.
// The gateway refuses it with 400 and closes the connection (RFC 9112, section 2.2 lets a
// recipient accept a bare LF; a proxy that accepts it where its upstream does not is a
// smuggling vector, and fasthttp accepts it inside the block but waits for more at its end).
var ErrBareLF = errors.New("bare LF in request head")

// Listener wraps the public listener so that every accepted connection is a *Conn.
type Listener struct{ net.Listener }

// Accept implements net.Listener.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// States of Conn's head scanner.
const (
	headSkip      uint8 = iota // before the request line: empty lines are skipped
	headLine                   // in the request line
	headFields                 // in the header block
	headDone                   // the head ended; counting body bytes delivered since
	headBodyLeft               // the request is answered; remaining bytes of its body follow
	headUnchecked              // not scanning: upgraded, chunked body, or pipelined bytes already read
)

// Conn is a client connection of the public listener that checks each request head as its bytes
// arrive, before fasthttp's parser sees them. It refuses a bare LF anywhere in the head at once:
// fasthttp would wait for a CRLFCRLF that never comes when the block ends in a bare LF, and
// accept the same byte inside the block. It also tells whether the request line ended, so a
// head over the buffer is answered 414 (long request line) or 431 (long header block).
//
// Body bytes are never scanned. The scanner knows where the next head starts only when the
// answered request tells it its declared body length (RequestDone): with a chunked body, an
// upgrade, or a next request already read together with the previous one (pipelining), it stops
// scanning for the rest of the connection, and only the header block check (ScanHeaders) applies.
//
// Read and RequestDone are called from the connection's serving goroutine only.
type Conn struct {
	net.Conn
	state     uint8
	prev      byte  // the last head byte scanned, across reads
	lineEmpty bool  // headFields: no byte but CR yet on this line
	count     int64 // headDone: bytes delivered after the head; headBodyLeft: body bytes still due
	err       error // refusal to return from the next Read
}

// NetConn returns the wrapped connection, so what it adds to net.Conn (a TLS connection's
// verified client certificate) stays reachable through the wrapper.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read implements net.Conn. Bytes up to a bare LF are delivered, then ErrBareLF, so fasthttp's
// parser fails on the incomplete head it holds and the error handler answers.
func (c *Conn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	switch c.state {
	case headUnchecked:
		return n, err
	case headDone:
		c.count += int64(n)
		return n, err
	case headBodyLeft:
		if int64(n) <= c.count {
			c.count -= int64(n)
			if c.count == 0 {
				c.startHead()
			}
			return n, err
		}
		from := int(c.count)
		c.startHead()
		return c.scan(p[:n], from, err)
	}
	return c.scan(p[:n], 0, err)
}

func (c *Conn) startHead() {
	c.state, c.prev, c.count = headSkip, 0, 0
}

// scan checks b[from:] as head bytes.
func (c *Conn) scan(b []byte, from int, err error) (int, error) {
	for i := from; i < len(b); i++ {
		ch := b[i]
		switch c.state {
		case headSkip:
			if ch == '\r' || ch == '\n' {
				continue
			}
			c.state = headLine
		case headLine:
			if ch == '\n' {
				if c.prev != '\r' {
					return c.refuse(i)
				}
				c.state, c.lineEmpty = headFields, true
			}
		case headFields:
			switch ch {
			case '\n':
				if c.prev != '\r' {
					return c.refuse(i)
				}
				if c.lineEmpty {
					c.state = headDone
					c.count = int64(len(b) - i - 1)
					return len(b), err
				}
				c.lineEmpty = true
			case '\r':
			default:
				c.lineEmpty = false
			}
		default:
			return len(b), err
		}
		c.prev = ch
	}
	return len(b), err
}

func (c *Conn) refuse(i int) (int, error) {
	c.err = ErrBareLF
	if i == 0 {
		return 0, ErrBareLF
	}
	return i, nil
}

// InRequestLine reports whether the head being read has not finished its request line yet: a
// head over the read buffer then has a request line too long to parse (414), not a header block
// too large (431).
func (c *Conn) InRequestLine() bool { return c.state == headSkip || c.state == headLine }

// RequestDone tells the scanner that the request whose head it read last was answered.
// bodyLength is the body the request declared (0 for none, negative when chunked); upgraded
// reports a connection that now carries another protocol. When the bytes already delivered
// are exactly the head and that body, or fewer, the next head is found and scanned; otherwise
// scanning stops.
func (c *Conn) RequestDone(bodyLength int64, upgraded bool) {
	if c.state != headDone || upgraded || bodyLength < 0 || c.count > bodyLength {
		c.state = headUnchecked
		return
	}
	if c.count == bodyLength {
		c.startHead()
		return
	}
	c.state, c.count = headBodyLeft, bodyLength-c.count
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

// ReadFrom keeps the TCP connection's sendfile path for static files copied to the client.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
