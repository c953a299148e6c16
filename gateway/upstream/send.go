package upstream

import (
	"net"
	"os"
	"runtime"
)

// sendBuffer sits between a connection's bufio.Writer and the socket. Normally it passes writes
// through; while hold is set (the last flush of a request) it keeps the bytes instead, so that
// sendAndAwait can write them and wait for the answer in one step. pending aliases the
// bufio.Writer's buffer, which stays untouched until the next request is written into it.
type sendBuffer struct {
	conn    net.Conn
	hold    bool
	pending []byte
	// passed is set when part of the request went out before the last flush (a body larger
	// than the buffer, fasthttp's flush after each chunk); the caller clears it per request.
	passed bool
}

func (s *sendBuffer) Write(p []byte) (int, error) {
	if s.hold {
		s.pending = p
		return len(p), nil
	}
	s.passed = true
	return s.conn.Write(p)
}

// send writes the request that bw holds and returns once the answer may be readable.
//
// On a plain TCP connection (pc.raw set) the write happens inside RawConn.Read's callback,
// which first clears the socket's read readiness and then calls it: the request leaves, the
// callback asks to wait, and the goroutine parks until the upstream's answer makes the socket
// readable. Readiness brought by the answer cannot be lost, because it can only come after the
// write, which comes after the clearing. That saves the read that would otherwise be tried
// first and fail with EAGAIN whenever the answer has not arrived yet, which at moderate load is
// nearly always (bench latency scenario: one system call per request).
//
// That holds only when the whole request leaves in that one write. When part of it went out
// before (pc.out.passed), the upstream may already have answered (HTTP lets it answer early,
// say a 413 or a 502 before reading the body), and the readiness its answer brought could be
// the one cleared; so such a request, like every request elsewhere (TLS, in-memory
// connections in tests), is flushed, the goroutine yields (other runnable requests go first,
// and under load the answer is usually there when the read comes), and the read comes first.
func (pc *pconn) send() error {
	if pc.raw == nil || pc.out.passed {
		if err := pc.bw.Flush(); err != nil {
			return err
		}
		runtime.Gosched()
		return nil
	}
	pc.out.hold = true
	err := pc.bw.Flush()
	pc.out.hold = false
	if err != nil {
		pc.out.pending = nil
		return err
	}
	pc.sendErr = nil
	// A failure of the wait itself (the deadline passed, the connection closed) comes back
	// from the read that follows, which classifies it. One that came before the callback ran
	// (the deadline had already passed) leaves the request in pending, and the ordinary
	// write below reports it.
	_ = pc.raw.Read(pc.await)
	if err := pc.sendErr; err != nil {
		pc.sendErr = nil
		return &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
	}
	if rest := pc.out.pending; len(rest) > 0 {
		// The socket's send buffer filled up (or the wait failed before the callback): the
		// rest goes the ordinary way, under the write deadline.
		pc.out.pending = nil
		if _, err := pc.conn.Write(rest); err != nil {
			return err
		}
		runtime.Gosched()
	}
	return nil
}
