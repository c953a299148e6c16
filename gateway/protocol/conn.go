package protocol

import (
	"bytes"
	"errors"
	"net"
	"time"
)

// ErrBareLF: a line of the request head (request line or header field), of a chunked body's
// framing (chunk-size line, the CRLF after chunk data) or of its trailer section ends in LF
// without CR. The gateway refuses it with 400 and closes the connection (RFC 9112, section 2.2
// lets a recipient accept a bare LF; a proxy that accepts it where its upstream does not is a
// smuggling vector, and fasthttp accepts it inside the block but waits for more at its end).
var ErrBareLF = errors.New("bare LF in request head")

// Listener wraps the public listener so that every accepted connection is a *Conn.
type Listener struct {
	net.Listener
	// WriteWait turns write-and-wait on for its connections (wait.go) and is how long a wait
	// for the next request lasts before the socket is read anyway; 0 leaves it off. The
	// fasthttp server must set a read or idle timeout (wait.go says why).
	WriteWait time.Duration
	// WriteDeadlineSlack lets each connection re-arm its write deadline lazily: the deadline
	// fires at most this late (LazyDeadline). 0 keeps deadlines exact.
	WriteDeadlineSlack time.Duration
}

// Accept implements net.Listener.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pc := &Conn{Passthrough: Passthrough{c}, wdSlack: l.WriteDeadlineSlack}
	if l.WriteWait > 0 {
		pc.enableWait(l.WriteWait)
	}
	return pc, nil
}

// States of Conn's scanner, in the order a message passes them.
const (
	stSkip         uint8 = iota // before the request line: empty lines are skipped
	stLine                      // in the request line
	stFieldStart                // at the start of a header field line (or of the empty line)
	stEmptyCR                   // a line that so far is only CR
	stName                      // matching the field name against Content-Length or Transfer-Encoding
	stValue                     // in the value of Content-Length or Transfer-Encoding
	stOther                     // in any other field line
	stBody                      // Content-Length body: count bytes
	stChunkSize                 // chunk-size line: hex digits
	stChunkOWS                  // whitespace after the chunk size
	stChunkExt                  // chunk extension, up to CR
	stChunkCR                   // CR of the chunk-size line seen: LF must follow
	stChunkData                 // chunk data: count bytes
	stChunkEndCR                // after chunk data: CR must follow
	stChunkEndLF                // after chunk data and CR: LF must follow
	stTrailerStart              // at the start of a trailer line (or of the final empty line)
	stTrailerCR                 // a trailer line that so far is only CR
	stTrailerLine               // in a trailer field line
	stStopped                   // not HTTP any more (upgraded), or framing fasthttp refuses anyway
)

// Body framing a head declares, as fasthttp (RFC 9112, section 6) reads it.
const (
	framingNone    uint8 = iota // no Content-Length, no Transfer-Encoding: no body
	framingLength               // Content-Length
	framingChunked              // Transfer-Encoding: chunked (it wins over Content-Length)
	framingBroken               // duplicate or malformed fields: fasthttp refuses the request and closes
)

// Fields the scanner reads in a head.
const (
	fieldNone uint8 = iota
	fieldLength
	fieldEncoding
)

var (
	nameLength   = []byte("content-length")
	nameEncoding = []byte("transfer-encoding")
)

// maxLengthDigits keeps Content-Length and chunk sizes inside int64; fasthttp refuses longer
// numbers (its limits are 18 decimal and 15 hex digits on 64-bit platforms).
const (
	maxLengthDigits = 18
	maxChunkDigits  = 15
)

// Conn is a client connection of the public listener that checks each request head as its bytes
// arrive, before fasthttp's parser sees them. It refuses a bare LF anywhere in the head at once:
// fasthttp would wait for a CRLFCRLF that never comes when the block ends in a bare LF, and
// accept the same byte inside the block. It also tells whether the request line ended, so a
// head over the buffer is answered 414 (long request line) or 431 (long header block).
//
// To find the next head on a keep-alive connection, it follows the framing of each request on
// its own, the way fasthttp reads it: a Content-Length body is counted, a chunked body is read
// through its chunk-size lines, chunk data and trailer section, and several requests read
// together (pipelining) are scanned one after the other. Body bytes are counted, never
// interpreted. It stops only where the stream is no longer HTTP: after a successful upgrade
// (Upgraded), or after framing fasthttp refuses (it answers 400 and closes). The gateway never
// tunnels CONNECT (405), so an upgrade is the only way out of HTTP.
//
// Bytes read after an upgrade request, before the handler knows whether the upgrade succeeds,
// are scanned as if HTTP followed. A refusal there keeps the bytes from the bare LF on: if the
// upgrade succeeds, they are delivered untouched to the tunnel instead.
//
// Read and Upgraded are called from the connection's serving goroutine only (a hijacked
// connection's handler runs after the request handler returned). A Conn allocates nothing,
// except the kept bytes of a refusal.
type Conn struct {
	Passthrough
	state   uint8
	prev    byte  // the last framing byte scanned, across reads
	field   uint8 // stName, stValue: the field being matched or read
	matched uint8 // stName: bytes of the field name matched; stValue: value bytes kept in value
	digits  uint8 // digits of a Content-Length value or chunk size
	framing uint8
	seen    uint8 // fields of this head already seen: 1<<fieldLength | 1<<fieldEncoding
	spaced  bool  // stValue: whitespace after the value began (more value bytes are malformed)
	value   [8]byte
	number  int64 // stValue: Content-Length being parsed; stChunkSize: chunk size being parsed
	length  int64 // the head's Content-Length; stBody, stChunkData: bytes still due
	kept    []byte
	err     error // refusal to return from the next Read
	w       waiter
	wd      LazyDeadline // the socket's write deadline (SetWriteDeadline)
	wdSlack time.Duration
}

// NetConn returns the wrapped connection, so what it adds to net.Conn (a TLS connection's
// verified client certificate) stays reachable through the wrapper. A held response is written
// first: whoever uses the wrapped connection sees the bytes in order.
func (c *Conn) NetConn() net.Conn {
	if c.w.state != holdNone {
		_ = c.flush(true)
	}
	c.wd.Forget() // whoever has the wrapped connection may set its deadline
	return c.Conn
}

// Read implements net.Conn. Bytes up to a bare LF are delivered, then ErrBareLF, so fasthttp's
// parser fails on the incomplete message it holds and the error handler answers. A held
// response is written first (wait.go).
func (c *Conn) Read(p []byte) (int, error) {
	if c.w.state != holdNone {
		if c.w.state == holdArmed && c.err == nil && c.state != stStopped && len(p) > 0 {
			n, done, err := c.writeAndWait(p)
			if done {
				return c.checked(p, n, err)
			}
		} else if err := c.flush(true); err != nil {
			return 0, err
		}
	}
	if c.state == stStopped {
		if len(c.kept) > 0 { // what followed an upgrade request, held back by a refusal
			n := copy(p, c.kept)
			c.kept = c.kept[n:]
			return n, nil
		}
		return c.Conn.Read(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	return c.checked(p, n, err)
}

// checked runs the scanner over the n bytes just read into p.
func (c *Conn) checked(p []byte, n int, err error) (int, error) {
	if n == 0 {
		return n, err
	}
	if i := c.scan(p[:n]); i >= 0 {
		c.err = ErrBareLF
		if i == 0 {
			return 0, ErrBareLF
		}
		c.kept = append([]byte(nil), p[i:n]...)
		return i, nil
	}
	return n, err
}

// Upgraded tells the scanner that the request whose handler just returned took the connection
// over for another protocol (a WebSocket tunnel): it scans nothing more, and bytes a refusal
// held back are delivered first.
func (c *Conn) Upgraded() {
	c.state = stStopped
	c.err = nil
	c.w.off = true // a tunnel's bytes are never held
	if c.w.state != holdNone {
		_ = c.flush(true)
	}
}

// InRequestLine reports whether the head being read has not finished its request line yet: a
// head over the read buffer then has a request line too long to parse (414), not a header block
// too large (431).
func (c *Conn) InRequestLine() bool { return c.state == stSkip || c.state == stLine }

// scan runs the scanner over b and returns the index of a bare LF, or -1.
func (c *Conn) scan(b []byte) int {
	for i := 0; i < len(b); i++ {
		ch := b[i]
		switch c.state {
		case stSkip:
			if ch == '\r' || ch == '\n' {
				continue
			}
			c.state = stLine
			fallthrough
		case stLine, stOther, stTrailerLine:
			// The rest of the line matters only for how it ends.
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				c.prev = b[len(b)-1]
				return -1
			}
			i += j
			if j > 0 {
				c.prev = b[i-1]
			}
			if c.prev != '\r' {
				return i
			}
			if c.state == stTrailerLine {
				c.state = stTrailerStart
			} else {
				c.state = stFieldStart
			}
			c.prev = '\n'
			continue
		case stFieldStart:
			switch {
			case ch == '\r':
				c.state = stEmptyCR
			case ch == '\n':
				return i
			case ch == ' ' || ch == '\t':
				// A folded continuation line: fasthttp joins it to the previous field. Of
				// Content-Length or Transfer-Encoding, that makes a value no scanner should
				// second-guess: stop (fasthttp refuses most such values anyway).
				if c.field != fieldNone {
					c.framing = framingBroken
				}
				c.state = stOther
			case lower(ch) == 'c':
				c.state, c.field, c.matched = stName, fieldLength, 1
			case lower(ch) == 't':
				c.state, c.field, c.matched = stName, fieldEncoding, 1
			default:
				c.state, c.field = stOther, fieldNone
			}
		case stEmptyCR:
			if ch != '\n' {
				c.state = stOther
				i--
				continue
			}
			if !c.endHead() {
				return -1
			}
		case stName:
			name := nameLength
			if c.field == fieldEncoding {
				name = nameEncoding
			}
			if int(c.matched) == len(name) {
				if ch != ':' {
					c.state, c.field = stOther, fieldNone
					i--
					continue
				}
				if c.seen&(1<<c.field) != 0 {
					c.framing = framingBroken // fasthttp refuses a second Content-Length or Transfer-Encoding
				}
				c.seen |= 1 << c.field
				c.state, c.matched, c.digits, c.number, c.spaced = stValue, 0, 0, 0, false
				continue
			}
			if lower(ch) != name[c.matched] {
				c.state, c.field = stOther, fieldNone
				i--
				continue
			}
			c.matched++
		case stValue:
			if ch == '\n' {
				if c.prev != '\r' {
					return i
				}
				c.endValue()
				c.state = stFieldStart
				continue
			}
			c.prev = ch
			c.valueByte(ch)
		case stBody:
			n := min(int64(len(b)-i), c.length)
			c.length -= n
			i += int(n) - 1
			if c.length == 0 {
				c.state = stSkip
			}
			continue
		case stChunkSize:
			v, hex := unhex(ch)
			switch {
			case hex:
				c.digits++
				if c.digits > maxChunkDigits {
					c.stop()
					return -1
				}
				c.number = c.number<<4 | int64(v)
			case c.digits == 0:
				return c.broken(ch, i)
			case ch == ' ' || ch == '\t':
				c.state = stChunkOWS
			case ch == ';':
				c.state = stChunkExt
			case ch == '\r':
				c.state = stChunkCR
			default:
				return c.broken(ch, i)
			}
		case stChunkOWS:
			switch ch {
			case ' ', '\t':
			case '\r':
				c.state = stChunkCR
			default: // fasthttp refuses ';' after whitespace, as RFC 9112's grammar does
				return c.broken(ch, i)
			}
		case stChunkExt:
			switch ch {
			case '\r':
				c.state = stChunkCR
			case '\n':
				return i
			}
		case stChunkCR:
			if ch != '\n' {
				return c.broken(ch, i)
			}
			if c.number == 0 {
				c.state = stTrailerStart
			} else {
				c.state, c.length = stChunkData, c.number
			}
		case stChunkData:
			n := min(int64(len(b)-i), c.length)
			c.length -= n
			i += int(n) - 1
			if c.length == 0 {
				c.state = stChunkEndCR
			}
			continue
		case stChunkEndCR:
			if ch != '\r' {
				return c.broken(ch, i)
			}
			c.state = stChunkEndLF
		case stChunkEndLF:
			if ch != '\n' {
				return c.broken(ch, i)
			}
			c.state, c.number, c.digits = stChunkSize, 0, 0
		case stTrailerStart:
			switch ch {
			case '\r':
				c.state = stTrailerCR
			case '\n':
				return i
			default:
				c.state = stTrailerLine
				c.prev = ch
			}
		case stTrailerCR:
			if ch != '\n' {
				c.state = stTrailerLine
				i--
				continue
			}
			c.state = stSkip
		case stStopped:
			return -1
		}
		c.prev = ch
	}
	return -1
}

// broken handles a byte the chunked framing does not allow: a bare LF is refused like any other;
// anything else fasthttp refuses itself (400, connection closed), so scanning stops.
func (c *Conn) broken(ch byte, i int) int {
	if ch == '\n' {
		return i
	}
	c.stop()
	return -1
}

func (c *Conn) stop() { c.state = stStopped }

// valueByte reads one byte of a Content-Length or Transfer-Encoding value.
func (c *Conn) valueByte(ch byte) {
	switch {
	case ch == ' ' || ch == '\t' || ch == '\r':
		if c.matched > 0 || c.digits > 0 {
			c.spaced = true
		}
		return
	case c.spaced:
		c.framing = framingBroken // "1 2", "chun ked"
		return
	}
	if c.field == fieldLength {
		if ch < '0' || ch > '9' || c.digits == maxLengthDigits {
			c.framing = framingBroken
			return
		}
		c.digits++
		c.number = c.number*10 + int64(ch-'0')
		return
	}
	if int(c.matched) == len(c.value) {
		c.framing = framingBroken
		return
	}
	c.value[c.matched] = lower(ch)
	c.matched++
}

var (
	valueChunked  = "chunked"
	valueIdentity = "identity"
)

// endValue records what a Content-Length or Transfer-Encoding line declared.
func (c *Conn) endValue() {
	if c.framing == framingBroken {
		return
	}
	if c.field == fieldLength {
		if c.digits == 0 {
			c.framing = framingBroken
			return
		}
		c.length = c.number
		if c.framing != framingChunked {
			c.framing = framingLength
		}
		return
	}
	// fasthttp takes "chunked" or "identity" (ASCII case ignored), and nothing else, not even a
	// list: a coding it does not know is refused.
	switch string(c.value[:c.matched]) {
	case valueChunked:
		c.framing = framingChunked
	case valueIdentity:
	default:
		c.framing = framingBroken
	}
}

// endHead moves past the empty line ending a head to the body its fields declared, and reports
// whether scanning goes on.
func (c *Conn) endHead() bool {
	framing, length := c.framing, c.length
	c.framing, c.seen, c.field, c.length, c.number, c.digits = framingNone, 0, fieldNone, 0, 0, 0
	switch {
	case framing == framingBroken:
		c.stop()
		return false
	case framing == framingChunked:
		c.state = stChunkSize
	case framing == framingLength && length > 0:
		c.state, c.length = stBody, length
	default:
		c.state = stSkip
	}
	return true
}

func lower(ch byte) byte {
	if ch >= 'A' && ch <= 'Z' {
		return ch + 'a' - 'A'
	}
	return ch
}
