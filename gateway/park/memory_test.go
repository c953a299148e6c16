//go:build linux && !race

// The race detector doubles stack guards and drops pooled items at random, so the figure holds
// only without it.

package park_test

import (
	"bufio"
	"net"
	"runtime"
	"syscall"
	"testing"
)

// A parked connection holds no goroutine, no read buffer and no request context: what is left
// is the socket's Go state, the wrappers and the Parker's entries. Measured over many keep-alive
// connections that each served a request and then parked, with the clients' ends in the same
// process (their net.TCPConn is counted too). fasthttp kept a goroutine with an 8 KiB stack
// and a 4 KiB read buffer per idle connection: a goroutine left behind per connection is never
// seen to exit, and a buffer breaks the bound.
func TestParkedConnectionMemory(t *testing.T) {
	n := 1000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+256) {
		n = max(int(lim.Cur)-256, 0) / 2
	}
	if n < 200 {
		t.Fatalf("the open-file limit (%d) leaves room for %d connections, want at least 200", lim.Cur, n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, pl, _ := serve(t, ln, hello)
	goroutines := runtime.NumGoroutine()
	before := liveHeap()

	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		if got := roundTrip(t, c, bufio.NewReaderSize(c, 512), "/x"); got != "hello /x" {
			t.Fatalf("connection %d: %q", i, got)
		}
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	waitFor(t, "every connection to park", func() bool { return pl.Parked() == int64(n) })
	// fasthttp's workers whose connections parked exit after MaxIdleWorkerDuration.
	waitFor(t, "fasthttp's idle workers to exit", func() bool { return runtime.NumGoroutine() <= goroutines+4 })
	after := liveHeap()

	// Goroutine stacks are left out: the exited workers' stacks stay cached by the runtime for
	// reuse, which says nothing of a parked connection; that none waits per connection is the
	// goroutine count above.
	per := float64(after-before) / float64(n)
	t.Logf("a parked connection, with the client's end: %.0f bytes of heap (%d connections, %d goroutines more than before)", per, n, runtime.NumGoroutine()-goroutines)
	if per > 2<<10 {
		t.Errorf("a parked connection takes %.0f bytes of heap with the client's end, want at most 2 KiB", per)
	}
	runtime.KeepAlive(conns)
}

// liveHeap is the live heap, after the collector freed what it could (twice: pooled buffers
// survive one collection).
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
