package loadgen

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/archway-gateway/archway/bench/benchcert"
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

// TestHandshakesResume: against a TLS server with session tickets, every handshake after the
// first of each worker resumes when asked to, and none does otherwise.
func TestHandshakesResume(t *testing.T) {
	dir := t.TempDir()
	files, err := benchcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go fixed.Serve(ln)
	addr := ln.Addr().String()
	full, err := Handshakes(addr, "/plain", 2, 300*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	if full.Completed == 0 || full.Errors != 0 || full.Resumed != 0 {
		t.Fatalf("full handshakes: %d completed, %d errors, %d resumed", full.Completed, full.Errors, full.Resumed)
	}
	res, err := Handshakes(addr, "/plain", 2, 300*time.Millisecond, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed < 4 || res.Errors != 0 || res.Resumed < res.Completed-2 {
		t.Fatalf("resumed handshakes: %d completed, %d errors, %d resumed", res.Completed, res.Errors, res.Resumed)
	}
	closeAll, err := Idle(addr, "/plain", 20, 4, IdleOptions{TLS: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	closeAll()
}

func TestIdleAndWebSocket(t *testing.T) {
	addr := startFixed(t)
	closeAll, err := Idle(addr, "/plain", 50, 4, IdleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closeAll()
	closeAll, err = Idle(addr, "/ws", 50, 4, IdleOptions{WebSocket: true})
	if err != nil {
		t.Fatal(err)
	}
	closeAll()
	// A server that answers 200 has not upgraded: the WebSocket holder must say so.
	plain := rawServer(t, func(c net.Conn) { answer(c, 1, okResponse) })
	if _, err := Idle(plain, "/ws", 1, 1, IdleOptions{WebSocket: true}); err == nil {
		t.Fatal("a 200 counted as an upgraded WebSocket")
	}
	res, err := WSEcho("ws://"+addr+"/ws", 4, 128, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed == 0 || res.Errors != 0 {
		t.Fatalf("ws: %d echoed, %d errors", res.Completed, res.Errors)
	}
}
