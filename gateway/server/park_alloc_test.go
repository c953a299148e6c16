//go:build !race

package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
)

// TestParkingRequestAllocatesNothing: with server.idle_park_after on, a request on a keep-alive
// connection that does not park (the deadline shortened and restored, the connection state
// followed at each request) allocates nothing, over a real socket.
func TestParkingRequestAllocatesNothing(t *testing.T) {
	g := newAllocGateway(t, `
server: {idle_park_after: 10s, idle_timeout: 60s}
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - {name: products, match: {path_prefix: /api/products}, strip_prefix: /api, upstream: products}
`, nil)
	if g.listeners[0].park == nil {
		t.Fatal("parking is not on")
	}
	roundTrip, checkAnswer := socketRoundTrip(t, g)
	allocs := allocsAfterWarmUp(5000, 2000, roundTrip)
	checkAnswer()
	if allocs != 0 {
		t.Fatalf("a request on a parking listener allocates %.2f times, want 0", allocs)
	}
	if s := g.ParkStats(); s.Parks != 0 {
		t.Fatalf("%+v: the busy connection parked", s)
	}
}

// socketRoundTrip serves g on a loopback listener (shut down when the test ends) and returns a
// round trip of benchRequest over one keep-alive connection, and a check that the last answer
// read was the upstream's kilobyte with a 200.
func socketRoundTrip(t *testing.T, g *Gateway) (roundTrip, checkAnswer func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := []byte(benchRequest)
	buf := make([]byte, 64<<10)
	size := firstResponseSize(t, c, req, buf)
	roundTrip = func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:size]); err != nil {
			t.Fatal(err)
		}
	}
	checkAnswer = func() {
		t.Helper()
		if !bytes.HasSuffix(buf[:size], kilobyteJSON) || !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
			t.Fatalf("unexpected response %.300q", buf[:size])
		}
	}
	return roundTrip, checkAnswer
}

// firstResponseSize sends req once and returns the length of the whole response (head and
// Content-Length body); the gateway's responses to it all have that length.
func firstResponseSize(t *testing.T, c net.Conn, req, buf []byte) int {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
		head, _, ok := bytes.Cut(buf[:n], []byte("\r\n\r\n"))
		if !ok {
			continue
		}
		i := bytes.Index(bytes.ToLower(head), []byte("\r\ncontent-length: "))
		if i < 0 {
			t.Fatalf("no Content-Length in %q", head)
		}
		v, _, _ := bytes.Cut(head[i+len("\r\ncontent-length: "):], []byte("\r\n"))
		length, err := strconv.Atoi(string(v))
		if err != nil {
			t.Fatal(err)
		}
		if total := len(head) + 4 + length; n >= total {
			if n != total {
				t.Fatal(fmt.Errorf("read %d bytes, more than one response of %d", n, total))
			}
			return total
		}
	}
}
