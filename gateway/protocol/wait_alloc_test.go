//go:build !race && (linux || darwin || freebsd || netbsd || openbsd)

package protocol

import (
	"io"
	"testing"
	"time"
)

// A keep-alive exchange through write-and-wait (hold, arm, write in the callback, wait, read)
// allocates nothing: the held answer's buffer is pooled and the callback bound once.
func TestWriteAndWaitAllocatesNothing(t *testing.T) {
	server, client := socketPair(t)
	c := newConn(server)
	c.enableWait(time.Minute)
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	go func() { // the client: each answer whole, then the next request
		b := make([]byte, len(answer1))
		for {
			if _, err := io.ReadFull(client, b); err != nil {
				return
			}
			if _, err := client.Write(req); err != nil {
				return
			}
		}
	}()
	later := time.Now().Add(time.Minute)
	buf := make([]byte, 4096)
	answer := []byte(answer1)
	var failed error
	e0 := readEvents()
	allocs := testing.AllocsPerRun(1000, func() {
		_ = c.SetWriteDeadline(later)
		_, _ = c.Write(answer)
		_ = c.SetReadDeadline(later)
		if n, err := c.Read(buf); err != nil || n != len(req) {
			if failed == nil {
				failed = err
				if failed == nil {
					failed = io.ErrShortBuffer
				}
			}
		}
	})
	if failed != nil {
		t.Fatalf("exchange failed: %v", failed)
	}
	if waits := readEvents().since(e0, eventWait); allocs != 0 || waits < 1000 {
		t.Fatalf("%.1f allocations per exchange; %d exchanges through the wait", allocs, waits)
	}
}
