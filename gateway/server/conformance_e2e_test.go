package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
)

// conformanceConfig is routingConfig with read_timeout far above the client's 5 s deadline, so
// a request the gateway waits on instead of answering fails the test rather than passing late.
func conformanceConfig(products, users string) string {
	return strings.Replace(routingConfig(products, users), "server:\n", "server:\n  read_timeout: 120s\n", 1)
}

// rawExchange writes raw on c and reads one response with a deadline.
func rawExchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func dialGateway(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// A bare LF anywhere in the request head gets 400 and a closed connection at once: at the end
// of the block (where fasthttp alone waits for read_timeout) as inside it or in the request line.
func TestBareLFInRequestHeadRefusedAtOnce(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, conformanceConfig(products.Addr, products.Addr))
	for _, raw := range []string{
		"GET /api/products HTTP/1.1\nHost: x\n\n",
		"GET /api/products HTTP/1.1\r\nHost: x\r\n\n",
		"GET /api/products HTTP/1.1\r\nHost: x\n\r\n",
		"GET /api/products HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
		"GET /api/products HTTP/1.1\nHost: x\r\n\r\n",
	} {
		t.Run(fmt.Sprintf("%q", raw), func(t *testing.T) {
			r := rawRequest(t, gw.Addr, raw)
			if r.Status != 400 || !r.Closed {
				t.Fatalf("status %d closed %v, want 400 and closed: %s", r.Status, r.Closed, r.Body)
			}
		})
	}
	if n := products.count(); n != 0 {
		t.Fatalf("the upstream received %d refused requests", n)
	}
}

// The head scanner finds the next head on a keep-alive connection after a body holding blank
// lines of bare LFs, which it must not mistake for a head.
func TestBareLFAfterKeepAliveBody(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, conformanceConfig(products.Addr, products.Addr))
	c, br := dialGateway(t, gw.Addr)
	for i := range 2 {
		resp, body := rawExchange(t, c, br, "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\na\n\nb\n\n")
		if resp.StatusCode != 200 {
			t.Fatalf("POST %d with LFs in its body: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := rawExchange(t, c, br, "GET /api/products HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("GET after the POSTs: %d %s", resp.StatusCode, body)
	}
	resp, body = rawExchange(t, c, br, "GET /api/products HTTP/1.1\r\nHost: x\r\n\n")
	if resp.StatusCode != 400 {
		t.Fatalf("bare LF on the connection's fourth request: %d %s", resp.StatusCode, body)
	}
	if got := products.count(); got != 3 {
		t.Fatalf("the upstream received %d requests, want 3", got)
	}
}

func TestExpectationOtherThanContinueIs417(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, conformanceConfig(products.Addr, products.Addr))
	for _, expect := range []string{"something", "100-continue, foo", "200-ok"} {
		r := rawRequest(t, gw.Addr, "POST /api/products HTTP/1.1\r\nHost: x\r\nExpect: "+expect+"\r\nContent-Length: 2\r\n\r\nhi")
		if r.Status != 417 || !r.Closed {
			t.Errorf("Expect: %s: status %d closed %v, want 417 and closed", expect, r.Status, r.Closed)
		}
	}
	if n := products.count(); n != 0 {
		t.Fatalf("the upstream received %d requests with an unmet expectation", n)
	}
	// 100-continue still works.
	r := rawRequest(t, gw.Addr, "POST /api/products HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
	if r.Status != 100 && r.Status != 200 {
		t.Fatalf("Expect: 100-continue: status %d", r.Status)
	}
}

// The gateway speaks HTTP/1.1 both ways: versions above it get 505, an HTTP/1.0 request reaches
// the upstream as HTTP/1.1 with the 1.0 client still answered by 1.0 rules (close unless it
// asked for keep-alive), and an HTTP/1.0 upstream's status line is not relayed.
func TestHTTPVersions(t *testing.T) {
	var mu sync.Mutex
	var protos []string
	products := startUpstream(t, "products", func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		protos = append(protos, string(ctx.Request.Header.Protocol()))
		mu.Unlock()
		ctx.SetBodyString("ok")
	})
	old := startHTTP10Upstream(t)
	gw := startGateway(t, conformanceConfig(products.Addr, old))

	for _, v := range []string{"HTTP/1.2", "HTTP/2.0", "HTTP/3.0", "HTTP/0.9"} {
		r := rawRequest(t, gw.Addr, "GET /api/products "+v+"\r\nHost: x\r\n\r\n")
		if r.Status != 505 || !r.Closed {
			t.Errorf("%s: status %d closed %v, want 505 and closed", v, r.Status, r.Closed)
		}
	}
	mu.Lock()
	if len(protos) != 0 {
		t.Fatalf("the upstream received %v", protos)
	}
	mu.Unlock()

	r := rawRequest(t, gw.Addr, "GET /api/products HTTP/1.0\r\nHost: x\r\n\r\n")
	if r.Status != 200 || !r.Closed {
		t.Fatalf("HTTP/1.0 request: status %d closed %v, want 200 and closed", r.Status, r.Closed)
	}
	// Without Host: forwarded as HTTP/1.1 with the gateway's own address as Host.
	r = rawRequest(t, gw.Addr, "GET /api/products HTTP/1.0\r\n\r\n")
	if r.Status != 200 || !r.Closed {
		t.Fatalf("HTTP/1.0 request without Host: status %d closed %v %q, want 200 and closed", r.Status, r.Closed, r.Body)
	}
	c, br := dialGateway(t, gw.Addr)
	for range 2 {
		resp, body := rawExchange(t, c, br, "GET /api/products HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
		if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") || body != "ok" {
			t.Fatalf("HTTP/1.0 keep-alive: %s %d Connection %q body %q", resp.Proto, resp.StatusCode, resp.Header.Get("Connection"), body)
		}
	}
	mu.Lock()
	if strings.Join(protos, ",") != "HTTP/1.1,HTTP/1.1,HTTP/1.1,HTTP/1.1" {
		t.Errorf("the upstream saw %v, want HTTP/1.1 each time", protos)
	}
	mu.Unlock()

	// users-host routes to the HTTP/1.0 upstream.
	c, br = dialGateway(t, gw.Addr)
	for range 2 {
		resp, body := rawExchange(t, c, br, "GET /old HTTP/1.1\r\nHost: a.users.test\r\n\r\n")
		if resp.Proto != "HTTP/1.1" || resp.StatusCode != 200 || body != "old" {
			t.Fatalf("HTTP/1.0 upstream relayed as %s %d %q", resp.Proto, resp.StatusCode, body)
		}
	}
}

// startHTTP10Upstream answers every request "HTTP/1.0 200 OK" with body "old" and closes.
func startHTTP10Upstream(t *testing.T) string {
	t.Helper()
	return startRawUpstream(t, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nold")
}

// A head not received within read_timeout is 408; a request line that alone fills
// max_header_bytes is 414, a header block that does is 431. None of the bodies names buffer
// sizes or socket addresses.
func TestHeadTimeoutAndLengthStatuses(t *testing.T) {
	products := startUpstream(t, "products", nil)
	cfg := strings.Replace(routingConfig(products.Addr, products.Addr), "server:\n", "server:\n  read_timeout: 1s\n  max_header_bytes: 4KiB\n", 1)
	gw := startGateway(t, cfg)

	r := rawRequest(t, gw.Addr, "GET /api/products HTTP/1.1\r\nHost: x\r\n")
	if r.Status != 408 || !r.Closed {
		t.Fatalf("partial head: status %d closed %v, want 408 and closed", r.Status, r.Closed)
	}
	checkFixedBody(t, r, "request timed out")

	r = rawRequest(t, gw.Addr, "GET /api/products/"+strings.Repeat("a", 8<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.Status != 414 || !r.Closed {
		t.Fatalf("long request line: status %d closed %v, want 414 and closed", r.Status, r.Closed)
	}
	checkFixedBody(t, r, "request line too long")

	r = rawRequest(t, gw.Addr, "GET /api/products HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8<<10)+"\r\n\r\n")
	if r.Status != 431 || !r.Closed {
		t.Fatalf("long header: status %d closed %v, want 431 and closed", r.Status, r.Closed)
	}
	checkFixedBody(t, r, "request header too large")

	r = rawRequest(t, gw.Addr, "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello")
	if r.Status != 400 {
		t.Fatalf("bad Content-Length: status %d", r.Status)
	}
	checkFixedBody(t, r, "bad request")
}

// checkFixedBody checks an error body is exactly the fixed message and the request id.
func checkFixedBody(t *testing.T, r response, msg string) {
	t.Helper()
	id := r.Headers.Get("X-Request-Id")
	want := fmt.Sprintf(`{"error":%q,"request_id":%q}`+"\n", msg, id)
	if id == "" || r.Body != want {
		t.Errorf("body %q, want %q", r.Body, want)
	}
}

// Absolute-form whose authority is Host is served exactly as origin-form with that Host
// (RFC 9112, section 3.2.2); an authority differing from Host is refused.
func TestAbsoluteFormRoutedByAuthority(t *testing.T) {
	products := startUpstream(t, "products", nil)
	users := startUpstream(t, "users", nil)
	gw := startGateway(t, conformanceConfig(products.Addr, users.Addr))

	r := rawRequest(t, gw.Addr, "GET http://shop.test/api/products?b=2&a=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
	if r.Status != 200 || r.Body != "products /products?b=2&a=1" {
		t.Fatalf("absolute-form to products: %d %q", r.Status, r.Body)
	}
	if got := products.last(t); got.URI != "/products?b=2&a=1" || got.Host != "shop.test" {
		t.Fatalf("products saw %s Host %s", got.URI, got.Host)
	}
	r = rawRequest(t, gw.Addr, "GET HTTP://A.Users.Test HTTP/1.1\r\nHost: a.users.test\r\nConnection: close\r\n\r\n")
	if r.Status != 200 || r.Body != "users /" {
		t.Fatalf("absolute-form by its authority to users-host: %d %q", r.Status, r.Body)
	}
	r = rawRequest(t, gw.Addr, "GET http://a.users.test/me HTTP/1.0\r\n\r\n")
	if r.Status != 200 || r.Body != "users /me" {
		t.Fatalf("HTTP/1.0 absolute-form without Host: %d %q", r.Status, r.Body)
	}
	for _, raw := range []string{
		"GET http://a.users.test/api/products HTTP/1.1\r\nHost: shop.test\r\n\r\n",
		"GET http://u@shop.test/api/products HTTP/1.1\r\nHost: shop.test\r\n\r\n",
		"GET ftp://shop.test/api/products HTTP/1.1\r\nHost: shop.test\r\n\r\n",
	} {
		if r := rawRequest(t, gw.Addr, raw); r.Status != 400 || !r.Closed {
			t.Errorf("%q: status %d closed %v, want 400 and closed", raw, r.Status, r.Closed)
		}
	}
}

// An upstream answer with both Content-Length and Transfer-Encoding: chunked reaches the client
// read as chunked, and the upstream connection is not used again: bytes the upstream sends
// after the chunked body (here a whole second response, in a later segment) never become the
// answer to another client's request.
func TestLengthBesideChunkedCannotSmuggleAnAnswer(t *testing.T) {
	products := startUpstream(t, "products", nil)
	users := testenv.ServeTCP(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			time.Sleep(2 * time.Millisecond)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		}
	})
	gw := startGateway(t, conformanceConfig(products.Addr, users))
	for i := range 3 {
		time.Sleep(5 * time.Millisecond) // the smuggled bytes arrive; the pool's idle check does not run yet
		r := rawRequest(t, gw.Addr, "GET /page HTTP/1.1\r\nHost: a.users.test\r\nConnection: close\r\n\r\n")
		if r.Status != 200 || r.Body != "ok" || r.Headers.Get("Content-Length") == "2" && r.Headers.Get("Transfer-Encoding") != "" {
			t.Fatalf("request %d: %d %q %v, want 200 \"ok\" with one framing", i+1, r.Status, r.Body, r.Headers)
		}
	}
}

// An upstream answer whose chunked body breaks the framing in its first chunk-size line gets the
// client a 502 with the gateway's error body, not a connection cut before any byte: the line
// comes with the head, so it is checked before the head is sent on.
func TestBrokenFirstChunkIsA502(t *testing.T) {
	products := startUpstream(t, "products", nil)
	users := startRawUpstream(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 2\r\nok\r\n0\r\n\r\n")
	gw := startGateway(t, conformanceConfig(products.Addr, users))
	r := rawRequest(t, gw.Addr, "GET /page HTTP/1.1\r\nHost: a.users.test\r\nConnection: close\r\n\r\n")
	if r.Status != 502 || !strings.Contains(r.Body, `"error":"upstream error"`) {
		t.Fatalf("%d %q, want 502 with the error body", r.Status, r.Body)
	}
}

// An upstream's 103 Early Hints reaches an HTTP/1.1 client before the final response, without
// hop-by-hop fields; an HTTP/1.0 client gets the final response only.
func TestEarlyHintsForwarded(t *testing.T) {
	products := startUpstream(t, "products", nil)
	hints := startRawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	gw := startGateway(t, conformanceConfig(products.Addr, hints))

	c, br := dialGateway(t, gw.Addr)
	interim, _ := rawExchange(t, c, br, "GET /page HTTP/1.1\r\nHost: a.users.test\r\n\r\n")
	if interim.StatusCode != 103 || interim.Header.Get("Link") != "</app.css>; rel=preload" || interim.Header.Get("X-Hop") != "" || interim.Header.Get("Connection") != "" {
		t.Fatalf("interim response: %d %v, want 103 with Link and no hop-by-hop fields", interim.StatusCode, interim.Header)
	}
	final, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(final.Body)
	if final.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("final response: %d %q", final.StatusCode, body)
	}

	r := rawRequest(t, gw.Addr, "GET /page HTTP/1.0\r\nHost: a.users.test\r\n\r\n")
	if r.Status != 200 || r.Body != "ok" {
		t.Fatalf("HTTP/1.0 client: %d %q, want the final response only", r.Status, r.Body)
	}
}

// startRawUpstream answers every request on a connection with the given bytes, then closes.
func startRawUpstream(t *testing.T, answer string) string {
	return testenv.ServeTCP(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, answer)
	})
}

// Extension methods (valid tokens) are forwarded on routes that allow every method, and get 405
// with Allow on routes that list theirs; the gateway no longer answers them 501 itself.
func TestExtensionMethodsForwarded(t *testing.T) {
	products := startUpstream(t, "products", nil)
	users := startUpstream(t, "users", nil)
	gw := startGateway(t, conformanceConfig(products.Addr, users.Addr))
	for _, m := range []string{"M-SEARCH", "PROPFIND", "PURGE"} {
		r := rawRequest(t, gw.Addr, m+" /x HTTP/1.1\r\nHost: a.users.test\r\nConnection: close\r\n\r\n")
		if r.Status != 200 || r.Body != "users /x" {
			t.Fatalf("%s on an any-method route: %d %q", m, r.Status, r.Body)
		}
		if got := users.last(t); got.Method != m {
			t.Fatalf("the upstream saw %s, want %s", got.Method, m)
		}
	}
	r := rawRequest(t, gw.Addr, "PROPFIND /api/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if r.Status != 405 || r.Headers.Get("Allow") != "GET, HEAD, POST, PUT" {
		t.Fatalf("PROPFIND on a GET/HEAD/POST/PUT route: %d Allow %q", r.Status, r.Headers.Get("Allow"))
	}
	if products.count() != 0 {
		t.Fatal("a method the route does not list reached its upstream")
	}
}
