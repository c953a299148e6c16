//go:build !race

package server

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestHTTP1OnAnH2CListenerAllocatesNothing: on a listener serving h2c, an HTTP/1.1 client's
// connection passes the demux once; its requests then take fasthttp's path as before, over a
// real socket, and a proxied request still allocates nothing (the HTTP/2 check, the protocol
// label and the access log's protocol field included).
func TestHTTP1OnAnH2CListenerAllocatesNothing(t *testing.T) {
	g := newAllocGateway(t, `
server:
  listeners:
    - {name: h2c, addr: "127.0.0.1:0", http2: true}
admin: {listen: ""}
access_log: {output: `+t.TempDir()+`/access.log}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - {name: products, match: {path_prefix: /api/products}, strip_prefix: /api, upstream: products}
`, nil)
	lns, err := g.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.ServeListeners(lns) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
		<-served
	}()
	if g.listeners[0].h2 == nil {
		t.Fatal("the listener does not serve HTTP/2")
	}

	conn, err := net.Dial("tcp", lns[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := []byte(benchRequest)
	br := bufio.NewReaderSize(conn, 16<<10)
	var resp fasthttp.Response
	run := func() {
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		resp.Reset()
		if err := resp.Read(br); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 || len(resp.Body()) != len(kilobyteJSON) {
			t.Fatalf("status %d, %d bytes", resp.StatusCode(), len(resp.Body()))
		}
	}
	if allocs := allocsAfterWarmUp(20000, 2000, run); allocs != 0 {
		t.Fatalf("an HTTP/1.1 request on an h2c listener allocates %.2f times, want 0", allocs)
	}
	if n := g.listeners[0].h2.Accepted(); n != 0 {
		t.Fatalf("%d connections went to HTTP/2", n)
	}
}
