//go:build linux || darwin || freebsd || netbsd || openbsd

package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// fallbackConn reports when send falls back to an ordinary write.
type fallbackConn struct {
	*net.TCPConn
	fellBack chan struct{}
}

func (c *fallbackConn) Write(p []byte) (int, error) {
	select {
	case c.fellBack <- struct{}{}:
	default:
	}
	return c.TCPConn.Write(p)
}

// TestSendFinishesWhenTheSocketIsFull: when the socket cannot take the whole request at once,
// send writes the rest the ordinary way (waiting for room under the write deadline) and the
// upstream gets every byte in order. The socket is filled first and the upstream reads only
// once send has fallen back, so the fallback is certain to run.
func TestSendFinishesWhenTheSocketIsFull(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tc := c.(*net.TCPConn)
	_ = tc.SetWriteBuffer(4096)
	_ = s.(*net.TCPConn).SetReadBuffer(4096)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))

	// Fill the socket until the kernel takes no more.
	filled := 0
	raw, _ := tc.SyscallConn()
	chunk := bytes.Repeat([]byte{'f'}, 1024)
	_ = raw.Write(func(fd uintptr) bool {
		for {
			n, err := syscall.Write(int(fd), chunk)
			if err != nil {
				return true
			}
			filled += n
		}
	})
	if filled == 0 {
		t.Fatal("could not fill the socket")
	}

	fc := &fallbackConn{TCPConn: tc, fellBack: make(chan struct{}, 1)}
	pc := &pconn{conn: fc, raw: rawConn(tc), out: sendBuffer{conn: fc}}
	pc.await = pc.awaitAnswer
	pc.bw = bufio.NewWriterSize(&pc.out, connWriteBufferSize)
	request := bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB
	_, _ = pc.bw.Write(request)

	got := make(chan []byte, 1)
	go func() {
		<-fc.fellBack
		buf := make([]byte, filled+len(request))
		if _, err := io.ReadFull(s, buf); err != nil {
			got <- nil
			return
		}
		got <- buf
		_, _ = s.Write([]byte("answer"))
	}()
	if err := pc.send(); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := <-got
	if buf == nil || !bytes.Equal(buf[:filled], bytes.Repeat([]byte{'f'}, filled)) || !bytes.Equal(buf[filled:], request) {
		t.Fatal("the upstream did not get the filler and then the request, in order")
	}
	answer := make([]byte, 6)
	if _, err := io.ReadFull(c, answer); err != nil || string(answer) != "answer" {
		t.Fatalf("answer %q, %v", answer, err)
	}
}

// TestSendWaitsForTheAnswer: on a plain TCP connection send returns only once the answer can be
// read, and the read that follows finds it without waiting.
func TestSendWaitsForTheAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	released := make(chan struct{})
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(s, buf); err != nil {
			return
		}
		<-released
		_, _ = s.Write([]byte("pong"))
		_, _ = io.Copy(io.Discard, s)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	pc := &pconn{conn: c, raw: rawConn(c), out: sendBuffer{conn: c}}
	if pc.raw == nil {
		t.Fatal("no raw connection for a TCP connection")
	}
	pc.await = pc.awaitAnswer
	pc.bw = bufio.NewWriterSize(&pc.out, connWriteBufferSize)
	_, _ = pc.bw.WriteString("ping\n")
	done := make(chan error, 1)
	go func() { done <- pc.send() }()
	select {
	case err := <-done:
		t.Fatalf("send returned before the answer: %v", err)
	case <-time.After(50 * time.Millisecond):
		// Not a synchronisation: it only gives a wrong send the chance to return early.
	}
	close(released)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The answer is there: a non-blocking peek finds it.
	var b [4]byte
	n, _, errno := syscall.Recvfrom(socketFD(c), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if errno != nil || n != 4 {
		t.Fatalf("after send the answer is not readable: %d, %v", n, errno)
	}
}
