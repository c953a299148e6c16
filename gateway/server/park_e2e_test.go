package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/archway-gateway/archway/gateway/park"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// echoUpstream answers with the request's method, URI and the SHA-256 of its body, then the
// body itself, so a client can check that every byte went through.
func echoUpstream(t testing.TB) *upstreamServer {
	return startUpstream(t, "echo", func(ctx *fasthttp.RequestCtx) {
		var body []byte
		if s := ctx.RequestBodyStream(); s != nil {
			body, _ = io.ReadAll(s)
		} else {
			body = ctx.PostBody()
		}
		sum := sha256.Sum256(body)
		ctx.SetContentType("application/octet-stream")
		fmt.Fprintf(ctx, "%s %s %x\n", ctx.Method(), ctx.RequestURI(), sum)
		ctx.Write(body)
	})
}

func parkingConfig(upstream string, extra string) string {
	return fmt.Sprintf(`
server:
  idle_park_after: 100ms
  idle_timeout: 60s
%s
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  echo: {targets: ["%s"]}
routes:
  - {name: echo, match: {path_prefix: /}, upstream: echo}
`, extra, upstream)
}

// parkedClient is a raw keep-alive client connection.
type parkedClient struct {
	net.Conn
	br *bufio.Reader
}

func (c *parkedClient) send(t testing.TB, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// expect reads one response and checks it is the echo of method, uri and body, byte for byte.
func (c *parkedClient) expect(t testing.TB, method, uri string, body []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("%s %s: reading response: %v", method, uri, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	want := append(fmt.Appendf(nil, "%s %s %x\n", method, uri, sum), body...)
	if resp.StatusCode != 200 || !bytes.Equal(got, want) {
		t.Fatalf("%s %s: status %d, body %d bytes, want 200 and the %d-byte echo\n%.200q", method, uri, resp.StatusCode, len(got), len(want), got)
	}
}

func dialPlain(t testing.TB, addr string) *parkedClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &parkedClient{Conn: c, br: bufio.NewReader(c)}
}

func get1(uri string) string {
	return "GET " + uri + " HTTP/1.1\r\nHost: shop.test\r\n\r\n"
}

func post(uri string, body []byte) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: shop.test\r\nContent-Length: %d\r\n\r\n%s", uri, len(body), body)
}

// waitParked waits until n connections are parked.
func waitParked(t testing.TB, g *server.Gateway, n int64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d parked connections", n), func() bool { return g.ParkStats().Parked == n })
}

// checkServedAfterParking sends, on a connection that has parked, a request with a body and
// then a pipelined pair in one write (after parking again), and checks every byte of the
// answers; each must have gone through a wake.
func checkServedAfterParking(t *testing.T, g *server.Gateway, c *parkedClient) {
	c.send(t, get1("/first"))
	c.expect(t, "GET", "/first", nil)
	waitParked(t, g, 1)

	body := bytes.Repeat([]byte("parked\x00\xff"), 5000)
	c.send(t, post("/after-park?x=1", body))
	c.expect(t, "POST", "/after-park?x=1", body)
	if s := g.ParkStats(); s.Wakes != 1 || s.Parks != 1 {
		t.Fatalf("after the first wake: %+v, want 1 park and 1 wake", s)
	}

	waitParked(t, g, 1)
	small := []byte("second of the pair")
	c.send(t, get1("/pipelined/1")+post("/pipelined/2", small))
	c.expect(t, "GET", "/pipelined/1", nil)
	c.expect(t, "POST", "/pipelined/2", small)
	if s := g.ParkStats(); s.Wakes != 2 || s.Parks != 2 {
		t.Fatalf("after the pipelined pair: %+v, want 2 parks and 2 wakes", s)
	}
}

// TestParkedConnectionServesNextRequest: a keep-alive connection idle past idle_park_after is
// parked, and its next request (with a body), and later a pipelined pair sent in one write,
// are answered byte for byte.
func TestParkedConnectionServesNextRequest(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, ""))
	checkServedAfterParking(t, g.Gateway, dialPlain(t, g.Addr))
}

// TestParkedTLSConnectionServesNextRequest: the same over TLS: the parked tls.Conn keeps its
// session state, and the client sees one TLS connection throughout.
func TestParkedTLSConnectionServesNextRequest(t *testing.T) {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "park")
	cert := ca.Issue(t, "shop", listenertest.Options{}, "shop.test")
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, fmt.Sprintf(`  listeners:
    - name: https
      addr: "127.0.0.1:0"
      tls: {certificates: [{cert: %s, key: %s}]}`, cert.CertFile, cert.KeyFile)))
	tc, err := tls.Dial("tcp", g.Addr, &tls.Config{RootCAs: ca.Pool, ServerName: "shop.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	checkServedAfterParking(t, g.Gateway, &parkedClient{Conn: tc, br: bufio.NewReader(tc)})
	if tc.ConnectionState().DidResume {
		t.Fatal("one TLS connection throughout: no resumption expected")
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestClientClosingParkedConnection: a client that closes a parked connection frees it: the
// gauge is back to 0, the close is counted as the client's, and no descriptor is left.
func TestClientClosingParkedConnection(t *testing.T) {
	up := echoUpstream(t)
	reg := prometheus.NewRegistry()
	g := startGateway(t, parkingConfig(up.Addr, ""), func(o *server.Options) { o.Registerer = reg })
	warm := dialPlain(t, g.Addr)
	warm.send(t, get1("/warm"))
	warm.expect(t, "GET", "/warm", nil) // the upstream pool's connection is open from now on
	warm.Close()
	waitUntil(t, "no open client connection", func() bool { return g.OpenConnections() == 0 })
	before := openFDs(t)

	const n = 5
	var clients []*parkedClient
	for i := range n {
		c := dialPlain(t, g.Addr)
		c.send(t, get1(fmt.Sprintf("/c%d", i)))
		c.expect(t, "GET", fmt.Sprintf("/c%d", i), nil)
		clients = append(clients, c)
	}
	waitParked(t, g.Gateway, n)
	if got := g.OpenConnections(); got != n {
		t.Fatalf("OpenConnections = %d with %d parked, want %d (each counted once)", got, n, n)
	}
	if v := gaugeValue(t, reg, "archway_parked_connections"); v != n {
		t.Fatalf("archway_parked_connections = %v, want %d", v, n)
	}
	for _, c := range clients {
		c.Close()
	}
	waitParked(t, g.Gateway, 0)
	if s := g.ParkStats(); s.Closed[park.ClosedByClient] != n || s.Wakes != 0 {
		t.Fatalf("%+v: want %d closed by the client and no wake", s, n)
	}
	waitUntil(t, "the descriptors of the closed connections to be gone", func() bool { return openFDs(t) <= before })
	if v := gaugeValue(t, reg, "archway_parked_connections"); v != 0 {
		t.Fatalf("archway_parked_connections = %v after the clients closed, want 0", v)
	}
}

func gaugeValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// TestParkedConnectionIdleTimeout: idle_timeout still closes a parked connection, counted
// from its last request, not from when it parked.
func TestParkedConnectionIdleTimeout(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, strings.Replace(parkingConfig(up.Addr, ""), "idle_timeout: 60s", "idle_timeout: 1s", 1))
	c := dialPlain(t, g.Addr)
	c.send(t, get1("/once"))
	c.expect(t, "GET", "/once", nil)
	answered := time.Now()
	waitParked(t, g.Gateway, 1)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the gateway to close the idle connection", n, err)
	}
	if idle := time.Since(answered); idle < time.Second {
		t.Fatalf("closed after %v, before idle_timeout (1s)", idle)
	}
	if s := g.ParkStats(); s.Closed[park.ClosedIdleTimeout] != 1 || s.Parked != 0 {
		t.Fatalf("%+v: want one close by idle timeout", s)
	}
}

// TestParkingConnectionCapHolds: max_connections counts a parked connection once: with the cap
// reached by parked connections a new one is refused, and a parked one closing makes room.
func TestParkingConnectionCapHolds(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, "  max_connections: 2"))
	a, b := dialPlain(t, g.Addr), dialPlain(t, g.Addr)
	for _, c := range []*parkedClient{a, b} {
		c.send(t, get1("/cap"))
		c.expect(t, "GET", "/cap", nil)
	}
	waitParked(t, g.Gateway, 2)
	if r := rawRequest(t, g.Addr, get1("/over")); r.Status != 503 {
		t.Fatalf("a third connection with two parked: status %d, want 503", r.Status)
	}
	// Woken, a parked connection is not admitted again (that would be refused at the cap).
	a.send(t, get1("/woken"))
	a.expect(t, "GET", "/woken", nil)
	b.Close()
	waitUntil(t, "the closed parked connection to give its place back", func() bool {
		return g.ParkStats().Closed[park.ClosedByClient] == 1
	})
	c := dialPlain(t, g.Addr)
	c.send(t, get1("/room"))
	c.expect(t, "GET", "/room", nil)
}

// TestShutdownClosesParkedConnections: Shutdown closes parked connections at once.
func TestShutdownClosesParkedConnections(t *testing.T) {
	up := echoUpstream(t)
	cfg := mustParse(t, parkingConfig(up.Addr, ""))
	gw, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	var clients []*parkedClient
	for range 3 {
		c := dialPlain(t, ln.Addr().String())
		c.send(t, get1("/s"))
		c.expect(t, "GET", "/s", nil)
		clients = append(clients, c)
	}
	waitParked(t, gw, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("client %d: %v after shutdown, want EOF", i, err)
		}
	}
	if s := gw.ParkStats(); s.Closed[park.ClosedAtShutdown] != 3 || s.Parked != 0 {
		t.Fatalf("%+v: want 3 closed at shutdown", s)
	}
}

// TestParkedConnectionsHoldNoGoroutine: 1 000 parked connections hold no goroutine each (the
// point of parking); each still gets its next request answered.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, ""))
	warm := dialPlain(t, g.Addr)
	warm.send(t, get1("/warm"))
	warm.expect(t, "GET", "/warm", nil)
	waitParked(t, g.Gateway, 1)
	base := runtime.NumGoroutine()

	const n = 1000
	clients := make([]*parkedClient, n)
	for i := range clients {
		// One at a time, so the gateway reuses one upstream connection (the upstream server's
		// goroutines are not the gateway's).
		clients[i] = dialPlain(t, g.Addr)
		clients[i].send(t, get1("/idle"))
		clients[i].expect(t, "GET", "/idle", nil)
	}
	waitParked(t, g.Gateway, n+1)
	waitUntil(t, "fasthttp's goroutines of the parked connections to exit", func() bool {
		return runtime.NumGoroutine() <= base+20
	})
	for i, c := range clients[:10] {
		uri := fmt.Sprintf("/again/%d", i)
		c.send(t, get1(uri))
		c.expect(t, "GET", uri, nil)
	}
}

// TestParkingIsRestartOnly: a reload cannot turn parking on or off (the listener is wrapped at
// start), and a reload that keeps it applies to parked connections' next requests.
func TestParkingIsRestartOnly(t *testing.T) {
	up := echoUpstream(t)
	other := startUpstream(t, "other", nil)
	yaml := parkingConfig(up.Addr, "")
	g := startGateway(t, yaml)
	c := dialPlain(t, g.Addr)
	c.send(t, get1("/before"))
	c.expect(t, "GET", "/before", nil)
	waitParked(t, g.Gateway, 1)

	off := mustParse(t, strings.Replace(yaml, "idle_park_after: 100ms", "idle_park_after: 0s", 1))
	if _, err := g.Apply(off, "test"); err == nil || !strings.Contains(err.Error(), "server.idle_park_after") {
		t.Fatalf("turning parking off by reload: %v, want refused naming server.idle_park_after", err)
	}
	moved := mustParse(t, strings.Replace(yaml, up.Addr, other.Addr, 1))
	if _, err := g.Apply(moved, "test"); err != nil {
		t.Fatal(err)
	}
	c.send(t, get1("/after"))
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "other /after" {
		t.Fatalf("parked connection after a reload got %q, want the new upstream's answer", got)
	}
}

// TestNeverParksInsideARequest: a request whose body pauses longer than idle_park_after (with
// and without Expect: 100-continue) is not at a request boundary: it never parks, and every
// byte arrives.
func TestNeverParksInsideARequest(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, ""))
	for _, expect := range []bool{false, true} {
		c := dialPlain(t, g.Addr)
		// A first request, so that the slow one is a keep-alive connection's next request,
		// sent at once (before the connection could park).
		c.send(t, get1("/first"))
		c.expect(t, "GET", "/first", nil)
		body := []byte("0123456789abcdefghij")
		head := fmt.Sprintf("POST /slow HTTP/1.1\r\nHost: shop.test\r\nContent-Length: %d\r\n", len(body))
		if expect {
			head += "Expect: 100-continue\r\n"
		}
		c.send(t, head+"\r\n")
		if expect {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := c.br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
				t.Fatalf("interim response %q, %v", line, err)
			}
			if _, err := c.br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		c.send(t, string(body[:7]))
		time.Sleep(500 * time.Millisecond) // five times idle_park_after, in the middle of the body
		c.send(t, string(body[7:]))
		// Parked in the middle, the body would end early: fasthttp answers 400.
		c.expect(t, "POST", "/slow", body)
		c.Close()
	}
}

// TestParkedProxyProtocolConnection: on a PROXY protocol listener the client address the
// header gave stays with the connection across a park: the woken request is forwarded with it.
func TestParkedProxyProtocolConnection(t *testing.T) {
	up := startUpstream(t, "app", nil)
	g := startGateway(t, parkingConfig(up.Addr, `  listeners:
    - {name: lb, addr: "127.0.0.1:0", proxy_protocol: {trusted_proxies: [127.0.0.0/8]}}`))
	c := dialPlain(t, g.Addr)
	c.send(t, "PROXY TCP4 203.0.113.9 127.0.0.1 51000 80\r\n"+get1("/one"))
	for i, uri := range []string{"/one", "/two"} {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := up.last(t); got.URI != uri || got.Headers["X-Real-Ip"][0] != "203.0.113.9" {
			t.Fatalf("request %d: upstream saw %s with X-Real-IP %v, want %s from 203.0.113.9", i, got.URI, got.Headers["X-Real-Ip"], uri)
		}
		if i == 0 {
			waitParked(t, g.Gateway, 1)
			c.send(t, get1("/two"))
		}
	}
	if s := g.ParkStats(); s.Wakes != 1 {
		t.Fatalf("%+v: the second request did not come through a wake", s)
	}
}

// TestHTTP2ConnectionsNeverPark: on a listener serving h2c next to HTTP/1.1, an HTTP/2
// connection idle past idle_park_after stays with the HTTP/2 server (it never reaches
// fasthttp's loop) and its next request is served on the same connection; an HTTP/1.1
// connection on the same listener parks.
func TestHTTP2ConnectionsNeverPark(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, `  listeners:
    - {name: both, addr: "127.0.0.1:0", http2: true}`))
	h2c := h2cClient(t)
	for i := range 2 {
		resp, err := h2c.Get(g.URL + "/h2")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("request %d: %s %d", i, resp.Proto, resp.StatusCode)
		}
		if i == 0 {
			c := dialPlain(t, g.Addr) // an HTTP/1.1 connection parks meanwhile
			c.send(t, get1("/h1"))
			c.expect(t, "GET", "/h1", nil)
			waitParked(t, g.Gateway, 1)
		}
	}
	if s := g.ParkStats(); s.Parks != 1 {
		t.Fatalf("%+v: only the HTTP/1.1 connection may park", s)
	}
}
