package loadgen

import (
	"net"
	"testing"
	"time"

	"github.com/archway-gateway/archway/bench/fixed"
)

func startFixed(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go fixed.Serve(ln)
	return ln.Addr().String()
}

func TestOpenLoopSendsAtTheRate(t *testing.T) {
	addr := startFixed(t)
	res, err := OpenLoop(addr, "/plain", 2000, 500*time.Millisecond, 8)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != 1000 || res.Errors != 0 {
		t.Fatalf("completed %d, errors %d, want 1000 and 0", res.Completed, res.Errors)
	}
	if res.Hist.TotalCount() != 1000 || res.Percentile(50) <= 0 {
		t.Fatalf("histogram: %d values, p50 %v ms", res.Hist.TotalCount(), res.Percentile(50))
	}
}

// A server that stalls makes every request due during the stall late; the open loop must see
// that in its tail instead of quietly sending less.
func TestOpenLoopCountsTheWaitForAStalledServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for n := 0; ; n++ {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if n == 10 {
						time.Sleep(200 * time.Millisecond)
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				}
			}()
		}
	}()
	res, err := OpenLoop(ln.Addr().String(), "/", 1000, 500*time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	// About 200 requests were due during the stall: the p90 must carry it (more than 20 ms).
	if p := res.Percentile(90); p < 20 {
		t.Errorf("p90 %.2f ms hides a 200 ms stall", p)
	}
}

func TestIdleAndWebSocket(t *testing.T) {
	addr := startFixed(t)
	closeAll, err := Idle(addr, "/plain", 50, 4)
	if err != nil {
		t.Fatal(err)
	}
	closeAll()
	res, err := WSEcho("ws://"+addr+"/ws", 4, 128, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed == 0 || res.Errors != 0 {
		t.Fatalf("ws: %d echoed, %d errors", res.Completed, res.Errors)
	}
}
