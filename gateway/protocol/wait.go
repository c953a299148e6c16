package protocol

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Write-and-wait on a client connection (Listener.WriteWait).
//
// After a keep-alive response fasthttp writes it (Flush) and reads for the client's next
// request, which has not come yet: the read fails with EAGAIN and the goroutine parks in the
// netpoller, one system call per request for nothing. Instead, Conn holds a response that one
// Write carries whole, and the Read that follows writes it inside RawConn.Read's callback and
// asks to wait: the goroutine parks until the client's next request makes the socket readable,
// and the callback then reads it. RawConn.Read clears the socket's read readiness before the
// callback runs, so readiness brought by anything the client sends in answer to the response
// comes after the clearing and cannot be lost.
//
// What the client sent before it had the response can be: pipelined requests, a half-close
// (FIN), the tail of a body. Its readiness may already have been collected by the netpoller,
// and the clearing forgets it; no call of the standard library looks at readiness without
// clearing it. So the wait is bounded: fasthttp's read deadline is shortened to the re-check
// delay (WriteWait) for it, and when that passes the socket is read anyway. Bytes found there
// at once arrived before the wait (their readiness was lost): the client sends ahead of its
// answers, and the connection goes back to the ordinary way for good. Nothing is lost; such a
// client waits at most the re-check delay once per connection.
//
// When a response is held and when it is written (the states below):
//   - Only the first Write after SetWriteDeadline is held (fasthttp sets the write deadline
//     before each response, so that Write starts one), only when it carries a whole response
//     with a Content-Length body or none (a streamed body, whose writes come apart in time, is
//     never held) of at most maxHeld bytes (it is copied into a pooled buffer: fasthttp reuses
//     its own at once), and only on a plain socket under transparent wrappers.
//   - The first SetReadDeadline after it (fasthttp's idle timeout at a request boundary) arms
//     the wait; the Read that follows writes and waits.
//   - Any other call first writes what is held, the ordinary way, under the write deadline: a
//     second SetReadDeadline (fasthttp found a pipelined request in its buffer and sets the read
//     timeout before serving it), Write, SetDeadline, SetWriteDeadline, Close, ReadFrom,
//     NetConn, Upgraded (a hijacked connection never waits on a held write), and a Read that was
//     not armed (fasthttp draining a request body it did not read).
//   - A send buffer too full to take the whole response in the callback: the rest is written
//     the ordinary way, under the write deadline, and the read is the ordinary one.
//   - A write error is returned by the call that performed the write; fasthttp then closes the
//     connection, as after a failed flush.
//
// TLS connections keep the ordinary way: crypto/tls encrypts in Write and answers some reads
// from its own buffer without reading the socket, so the bytes cannot be held above it and
// written to the socket below. So do PROXY protocol connections (the header reader buffers)
// and HTTP/2-capable listeners' connections (the demux replays what it peeked).
//
// The fasthttp server must set a read or an idle timeout: with neither it calls no
// SetReadDeadline between a response and serving a pipelined request, which would then run
// with the previous response held.

// States of a held response, as the serving goroutine sees it.
const (
	holdNone  uint8 = iota // nothing held
	holdHeld               // a whole response is held: the next call writes it
	holdArmed              // held, and the read deadline below shortened: the next Read writes and waits
)

// Who owns the held bytes (waiter.own). fasthttp may close a connection from another goroutine
// (its shutdown closes connections it counts as idle, which it does once their response is
// flushed: here, held): Close then writes the held response itself if nobody is writing it, or
// waits for the serving goroutine to finish writing it (bounded by the write deadline).
const (
	ownFree    uint32 = iota // nothing held
	ownHeld                  // held; whoever moves it on writes it
	ownWriting               // the serving goroutine is writing it
	ownClosed                // Close took it or found nothing: nothing is held any more
)

// maxHeld is the largest response held: copying a larger one costs about what the saved read
// does.
const maxHeld = 4 << 10

var heldPool = sync.Pool{New: func() any { b := make([]byte, 0, maxHeld); return &b }}

// waiter is Conn's write-and-wait state; the zero value is off. The serving goroutine's, as the
// rest of Conn, except own (any goroutine) and, once Close took them over, buf and pending.
type waiter struct {
	raw      syscall.RawConn // the socket, under transparent wrappers only; nil: off
	recheck  time.Duration   // how long a wait lasts before the socket is read anyway
	await    func(fd uintptr) bool
	own      atomic.Uint32
	state    uint8
	start    bool // the next Write starts a response
	off      bool // this connection writes the ordinary way for good
	buf      *[]byte
	pending  []byte    // what is held and not yet written
	deadline time.Time // fasthttp's read deadline while armed

	// The callback's results.
	into  []byte
	calls int
	got   bool
	n     int
	rerr  error
	werr  error
}

// testHook, set by the package's tests before any connection, is told what write-and-wait did.
var testHook func(waitEvent)

type waitEvent uint8

const (
	eventWait           waitEvent = iota // a Read wrote a held response and waited
	eventSendBufferFull                  // the callback could not write it all
	eventWriteError                      // the callback's write failed
	eventLostReadiness                   // bytes were there when the re-check delay passed
)

func note(e waitEvent) {
	if testHook != nil {
		testHook(e)
	}
}

// enableWait turns write-and-wait on when the socket is reachable through transparent
// wrappers only.
func (c *Conn) enableWait(recheck time.Duration) {
	if raw := socketBelow(c.Conn); raw != nil {
		c.w.raw, c.w.recheck = raw, recheck
		c.w.await = c.awaitRequest
	}
}

// Write implements net.Conn (see above for what is held).
func (c *Conn) Write(p []byte) (int, error) {
	if c.w.state != holdNone {
		if err := c.flush(true); err != nil {
			return 0, err
		}
	}
	if c.w.start {
		c.w.start = false
		if c.w.raw != nil && !c.w.off && len(p) <= maxHeld && wholeResponse(p) && c.hold(p) {
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// hold copies p aside; false when the connection is closed already.
func (c *Conn) hold(p []byte) bool {
	buf := heldPool.Get().(*[]byte)
	pending := append((*buf)[:0], p...)
	c.w.buf, c.w.pending = buf, pending
	if !c.w.own.CompareAndSwap(ownFree, ownHeld) {
		c.w.buf, c.w.pending = nil, nil
		heldPool.Put(buf)
		return false
	}
	c.w.state = holdHeld
	return true
}

// take makes the serving goroutine the writer of the held bytes; false when Close took them.
func (c *Conn) take() bool {
	if c.w.own.CompareAndSwap(ownHeld, ownWriting) {
		return true
	}
	c.w.state = holdNone // Close wrote them and owns the buffer: leave it alone
	return false
}

// written ends the serving goroutine's write of the held bytes (the buffer goes back later).
func (c *Conn) written() { c.w.own.Store(ownFree) }

// SetReadDeadline implements net.Conn. The first after a held response arms the wait with the
// deadline shortened to the re-check delay; fasthttp's own is kept for after it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	switch c.w.state {
	case holdHeld:
		c.w.state, c.w.deadline = holdArmed, t
		d := time.Now().Add(c.w.recheck)
		if !t.IsZero() && t.Before(d) {
			d = t
		}
		return c.Conn.SetReadDeadline(d)
	case holdArmed:
		if err := c.flush(false); err != nil {
			return err
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn; fasthttp calls it before each response.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.w.state != holdNone {
		if err := c.flush(true); err != nil {
			return err
		}
	}
	c.w.start = true
	return c.wd.Set(t, c.wdSlack, c.Conn.SetWriteDeadline)
}

// SetDeadline implements net.Conn (fasthttp clears both deadlines before a hijack).
func (c *Conn) SetDeadline(t time.Time) error {
	if c.w.state != holdNone {
		if err := c.flush(false); err != nil {
			return err
		}
	}
	c.wd.Forget()
	return c.Conn.SetDeadline(t)
}

// Close writes what is held (bounded by the write deadline) and closes; it may come from any
// goroutine. The write's error, if any, is returned after the close.
func (c *Conn) Close() error {
	var werr error
	if c.w.raw != nil {
		werr = c.closeHeld()
	}
	if err := c.Conn.Close(); err != nil {
		return err
	}
	return werr
}

func (c *Conn) closeHeld() error {
	for {
		switch c.w.own.Load() {
		case ownFree:
			if c.w.own.CompareAndSwap(ownFree, ownClosed) {
				return nil
			}
		case ownHeld:
			if c.w.own.CompareAndSwap(ownHeld, ownClosed) {
				_, err := c.Conn.Write(c.w.pending)
				*c.w.buf = (*c.w.buf)[:0]
				heldPool.Put(c.w.buf)
				return err
			}
		case ownWriting:
			runtime.Gosched() // the serving goroutine finishes its write (the write deadline bounds it)
		default:
			return nil
		}
	}
}

// ReadFrom keeps the TCP connection's sendfile path for static files, after what is held.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if c.w.state != holdNone {
		if err := c.flush(true); err != nil {
			return 0, err
		}
	}
	return c.Passthrough.ReadFrom(r)
}

// flush writes the held response the ordinary way and, when asked and the wait was armed, puts
// fasthttp's read deadline back.
func (c *Conn) flush(restore bool) error {
	armed := c.w.state == holdArmed
	if !c.take() {
		return net.ErrClosed
	}
	_, err := c.Conn.Write(c.w.pending)
	c.written()
	c.release()
	if err == nil && restore && armed {
		err = c.Conn.SetReadDeadline(c.w.deadline)
	}
	return err
}

// release gives the held buffer back, after the serving goroutine wrote it.
func (c *Conn) release() {
	*c.w.buf = (*c.w.buf)[:0]
	heldPool.Put(c.w.buf)
	c.w.buf, c.w.pending, c.w.state = nil, nil, holdNone
}

// writeAndWait writes the held response and waits for the next request, reading it into p.
// done is false when the ordinary read is to follow (it reports a deadline that passed or a
// closed connection the way the wrappers below make of them: parking turns its timeout into
// end-of-file).
func (c *Conn) writeAndWait(p []byte) (n int, done bool, err error) {
	w := &c.w
	if !c.take() {
		return 0, true, net.ErrClosed
	}
	w.into, w.calls, w.got, w.werr = p, 0, false, nil
	note(eventWait)
	rerr := w.raw.Read(w.await)
	if w.werr != nil {
		note(eventWriteError)
		werr := w.werr
		w.werr, w.into = nil, nil
		c.release()
		return 0, true, c.opError("write", werr)
	}
	if len(w.pending) > 0 {
		// The send buffer was full, or the wait failed before the callback ran (a deadline
		// already passed): the rest goes the ordinary way, then the ordinary read.
		note(eventSendBufferFull)
		_, err := c.Conn.Write(w.pending)
		c.written()
		c.release()
		w.into = nil
		if err == nil {
			err = c.Conn.SetReadDeadline(w.deadline)
		}
		return 0, err != nil, err
	}
	c.release() // the callback marked the write done
	if w.got {
		return c.readResult()
	}
	// The wait ended without the socket becoming readable: fasthttp's deadline goes back, and
	// if it was the re-check delay that passed, the socket is read now, waiting again if empty.
	if err := c.Conn.SetReadDeadline(w.deadline); err != nil {
		w.into = nil
		return 0, true, err
	}
	if !errors.Is(rerr, os.ErrDeadlineExceeded) {
		w.into = nil
		return 0, false, nil
	}
	w.calls, w.got = 0, false
	_ = w.raw.Read(w.await)
	if !w.got {
		w.into = nil
		return 0, false, nil
	}
	if w.calls == 1 && w.n > 0 {
		// Bytes were there when the re-check began: they arrived before the wait, and their
		// readiness was lost. This client sends ahead of its answers.
		note(eventLostReadiness)
		w.off = true
	}
	return c.readResult()
}

// readResult is what the callback read, as Read returns it.
func (c *Conn) readResult() (int, bool, error) {
	w := &c.w
	w.into = nil
	switch {
	case w.rerr != nil:
		return 0, true, c.opError("read", w.rerr)
	case w.n == 0:
		return 0, true, io.EOF
	}
	return w.n, true, nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, err)}
}

var (
	httpPrefix      = []byte("HTTP/1.")
	headEnd         = []byte("\r\n\r\n")
	contentLength   = []byte("content-length:")
	transferCodings = []byte("transfer-encoding:")
)

// wholeResponse reports whether p is exactly one HTTP/1.x response: its head, and its whole
// body by Content-Length, or no body for a status that has none (1xx, 204, 304). Anything
// else (a chunked or streamed body, a head without its body, two responses) is not.
func wholeResponse(p []byte) bool {
	if len(p) < 16 || !bytes.HasPrefix(p, httpPrefix) || p[8] != ' ' || !digits(p[9:12]) {
		return false
	}
	end := bytes.Index(p, headEnd)
	if end < 0 {
		return false
	}
	head, body := p[:end+2], len(p)-end-4
	code := p[9:12]
	if code[0] == '1' || string(code) == "204" || string(code) == "304" {
		return body == 0
	}
	length := -1
	for line := head[bytes.IndexByte(head, '\n')+1:]; len(line) > 0; {
		i := bytes.IndexByte(line, '\n')
		if i < 0 {
			return false
		}
		field := line[:i]
		line = line[i+1:]
		switch {
		case hasFoldPrefix(field, transferCodings):
			return false
		case hasFoldPrefix(field, contentLength):
			if length >= 0 {
				return false
			}
			length = parseLength(field[len(contentLength):])
			if length < 0 {
				return false
			}
		}
	}
	return length == body
}

func digits(b []byte) bool {
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return true
}

func hasFoldPrefix(b, prefix []byte) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i, ch := range prefix {
		if lower(b[i]) != ch {
			return false
		}
	}
	return true
}

// parseLength reads a Content-Length value (with optional spaces and the line's CR), or -1.
func parseLength(v []byte) int {
	v = bytes.TrimRight(bytes.TrimLeft(v, " \t"), " \t\r")
	if len(v) == 0 || len(v) > 9 {
		return -1
	}
	n := 0
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			return -1
		}
		n = n*10 + int(ch-'0')
	}
	return n
}
