package loadgen

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"
)

// rawServer accepts connections on a loopback port and hands each to serve.
func rawServer(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// answer reads n requests on c and answers each with resp.
func answer(c net.Conn, n int, resp string) bool {
	br := bufio.NewReader(c)
	for range n {
		req, err := http.ReadRequest(br)
		if err != nil {
			return false
		}
		req.Body.Close()
		if _, err := c.Write([]byte(resp)); err != nil {
			return false
		}
	}
	return true
}

// TestClosedClassifiesEachFailure: every kind of failure is told apart, and only a reused
// connection closed before any response byte counts as what a client retries.
func TestClosedClassifiesEachFailure(t *testing.T) {
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	for _, tc := range []struct {
		name  string
		addr  func() string
		kinds []int // of successive requests on one client connection
	}{
		{"answers", func() string {
			return rawServer(t, func(c net.Conn) { answer(c, 3, okResponse) })
		}, []int{kindOK, kindOK, kindOK}},
		{"keep-alive connection closed after one answer", func() string {
			return rawServer(t, func(c net.Conn) { answer(c, 1, okResponse) })
		}, []int{kindOK, kindReusedClosed, kindOK}},
		{"fresh connection closed before an answer", func() string {
			return rawServer(t, func(c net.Conn) { answer(c, 0, okResponse) })
		}, []int{kindRead, kindRead}},
		{"closed in the middle of a response", func() string {
			return rawServer(t, func(c net.Conn) {
				if answer(c, 1, okResponse) {
					answer(c, 1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
				}
			})
		}, []int{kindOK, kindRead}},
		{"5xx status", func() string {
			return rawServer(t, func(c net.Conn) { answer(c, 2, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n") })
		}, []int{kindStatus, kindStatus}},
		{"nothing listening", closedPort, []int{kindConnect}},
		{"no answer", func() string {
			return rawServer(t, func(c net.Conn) { _, _ = bufio.NewReader(c).ReadString('\n'); time.Sleep(10 * time.Second) })
		}, []int{kindTimeout}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr()
			cl := &closedConn{addr: addr, raw: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), timeout: 300 * time.Millisecond}
			defer cl.close()
			for i, want := range tc.kinds {
				if got := cl.do(); got != want {
					t.Fatalf("request %d: kind %d, want %d", i, got, want)
				}
			}
		})
	}
}

func TestClosedRetriesAReusedConnectionOnce(t *testing.T) {
	// Every connection answers one request and closes: every request after a connection's
	// first is a reused-connection close, retried on a new connection and answered there.
	addr := rawServer(t, func(c net.Conn) { answer(c, 1, okResponse) })
	res, err := Closed(addr, "/", 2, 200*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed == 0 || res.Errors.ReusedClosed == 0 || res.Errors.Seen() != 0 {
		t.Fatalf("completed %d, errors %+v: want completions, reused-connection closes, none seen", res.Completed, res.Errors)
	}
}
