package main

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

// TestAnalyzeFindsNetpollWakeUpsAndHandOffs traces a workload with each kind of wait the
// analysis separates, made certain by construction rather than timing: an echo server whose
// goroutine is parked in Read before each of 200 one-byte round trips (the client sends the
// next byte only once the runtime reports the server in "IO wait"), so the netpoller wakes it
// 200 times; 100 values over an unbuffered channel, each of which readies one of the two
// goroutines from the other; one GC.
func TestAnalyzeFindsNetpollWakeUpsAndHandOffs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := trace.Start(&out); err != nil {
		t.Fatal(err)
	}
	const roundTrips, handOffs = 200, 100
	// Sending only after the server is seen parked is what makes the count certain: a client
	// that merely waits for the echo races the server's next Read, and on a loaded CI machine a
	// server descheduled between its write and that Read found the next byte already there in
	// 95 of 200 round trips. The server's first park comes before the trace starts, so the
	// analyzer must find nearly all of them; one that found none, or half, fails.
	const mostRoundTrips = roundTrips * 9 / 10
	b := []byte{0}
	for range roundTrips {
		waitParkedInRead(t, "TestAnalyzeFindsNetpollWakeUpsAndHandOffs.func1")
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatal(err)
		}
	}
	ch, done := make(chan int), make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	for i := range handOffs {
		ch <- i
	}
	close(ch)
	<-done
	runtime.GC()
	trace.Stop()
	conn.Close()
	<-served

	rep, err := Analyze(&out)
	if err != nil {
		t.Fatal(err)
	}
	count := func(m map[string]int, substr ...string) int {
		n := 0
		for k, v := range m {
			if containsAll(k, substr...) {
				n += v
			}
		}
		return n
	}
	if n := count(rep.Parks, "TestAnalyzeFindsNetpollWakeUpsAndHandOffs.func1", "[network]"); n < mostRoundTrips {
		t.Errorf("the echo server parked in Read %d times, want at least %d: %v", n, mostRoundTrips, rep.Parks)
	}
	netpoll := 0
	for _, w := range rep.Waits {
		if w.Cause == causeNetpoll {
			netpoll++
		}
	}
	if netpoll < mostRoundTrips {
		t.Errorf("%d goroutines woken by the netpoller, want at least %d", netpoll, mostRoundTrips)
	}
	batched := 0
	for size, n := range rep.Batches {
		batched += size * n
	}
	if batched < mostRoundTrips {
		t.Errorf("the netpoller's batches hold %d goroutines, want at least %d: %v", batched, mostRoundTrips, rep.Batches)
	}
	if n := count(rep.Readiers, "TestAnalyzeFindsNetpollWakeUpsAndHandOffs"); n < handOffs {
		t.Errorf("%d goroutines readied by the test's goroutines, want at least %d: %v", n, handOffs, rep.Readiers)
	}
	if rep.GCCycles < 1 {
		t.Errorf("no GC cycle seen")
	}
	var text bytes.Buffer
	rep.Write(&text, roundTrips)
	for _, want := range []string{"netpoll or scheduler", "readied by a goroutine", "netpoller hand-outs:", "where goroutines block"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, text.String())
		}
	}
}

// waitParkedInRead returns once the goroutine whose stack names fn is parked on the network
// ("IO wait"), as the runtime's own goroutine dump reports it.
func waitParkedInRead(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(firstLine(g), "[IO wait") {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("the goroutine running %s never parked on the network", fn)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func containsAll(s string, substr ...string) bool {
	for _, x := range substr {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
