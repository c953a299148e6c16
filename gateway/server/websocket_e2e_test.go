package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/fasthttp/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// wsEcho is a real WebSocket server (net/http + fasthttp/websocket) that echoes messages.
// It records the headers of every handshake it sees.
type wsEcho struct {
	Addr        string
	handshakes  atomic.Int64
	lastHeaders atomic.Pointer[http.Header]
}

func startWSEcho(t *testing.T) *wsEcho {
	t.Helper()
	e := &wsEcho{}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		e.lastHeaders.Store(&h)
		if r.Header.Get("Upgrade") == "" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		if r.URL.Query().Get("deny") != "" {
			http.Error(w, `{"error":"no token"}`, http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		e.handshakes.Add(1)
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	e.Addr = ln.Addr().String()
	return e
}

func wsConfig(target, routeExtra string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  orders: {targets: ["%s"]}
routes:
  - name: ws
    match: {path_prefix: /api/ws}
    strip_prefix: /api
    upstream: orders
    websocket: {idle_timeout: 30s, max_message_bytes: 64KiB, close_grace: 300ms}
%s
  - name: plain
    match: {path_prefix: /plain}
    upstream: orders
`, target, routeExtra)
}

func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"X-Client": {"test"}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func closeCodeOf(err error) int {
	if ce, ok := err.(*websocket.CloseError); ok {
		return ce.Code
	}
	return -1
}

// TestWebSocketTenThousandMessagesAcrossReload sends 10 000 messages through the gateway; a
// reload that keeps the route happens in the middle, and the connection survives it.
func TestWebSocketTenThousandMessagesAcrossReload(t *testing.T) {
	echo := startWSEcho(t)
	gw := startGateway(t, wsConfig(echo.Addr, ""))
	c := dialWS(t, "ws://"+gw.Addr+"/api/ws/orders?token=abc")
	target := gw.Snapshot().Upstreams["orders"].Targets()[0]
	if target.InFlight() != 1 || target.Tunnels() != 1 {
		t.Fatalf("open tunnel: in flight %d, tunnels %d; want 1 and 1 (least_conn must see it)", target.InFlight(), target.Tunnels())
	}
	h := *echo.lastHeaders.Load()
	if h.Get("X-Forwarded-For") == "" || h.Get("X-Client") != "test" || h.Get("Sec-Websocket-Key") == "" {
		t.Errorf("handshake headers at the upstream: %v", h)
	}
	for i := range 10000 {
		if i == 5000 {
			cfg := mustParse(t, strings.Replace(wsConfig(echo.Addr, ""), "idle_timeout: 30s", "idle_timeout: 31s", 1))
			if _, err := gw.Apply(cfg, "test"); err != nil {
				t.Fatal(err)
			}
		}
		msg := fmt.Sprintf("message %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != msg {
			t.Fatalf("message %d: got %q, %v", i, got, err)
		}
	}
	if gw.Snapshot().Version != 2 {
		t.Fatal("the reload did not happen")
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for target.Tunnels() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if target.InFlight() != 0 || target.Tunnels() != 0 {
		t.Fatalf("after close: in flight %d, tunnels %d", target.InFlight(), target.Tunnels())
	}
}

// TestUpgradedConnectionNeverReturnsToThePool: the upstream keeps an upgraded connection open
// after the WebSocket ends and answers any HTTP request on it with a canary body. If the gateway
// ever put that connection in its keep-alive pool, a later request would get the canary.
func TestUpgradedConnectionNeverReturnsToThePool(t *testing.T) {
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
			go serveCanary(c)
		}
	}()
	gw := startGateway(t, wsConfig(ln.Addr().String(), ""))
	for range 3 {
		c := dialWS(t, "ws://"+gw.Addr+"/api/ws/x")
		c.WriteMessage(websocket.TextMessage, []byte("hi"))
		c.Close()
	}
	for i := range 50 {
		r := get(t, gw.URL+"/plain/x")
		if strings.Contains(r.Body, "CANARY") || r.Status != 200 {
			t.Fatalf("request %d: %d %q: a request travelled over an upgraded connection", i, r.Status, r.Body)
		}
	}
	if st := gw.Snapshot().Upstreams["orders"].Targets()[0].Stats(); st.OpenConns > 1 {
		t.Fatalf("pool holds %d connections; the tunnels' connections must never enter it", st.OpenConns)
	}
}

// serveCanary speaks just enough HTTP: a WebSocket handshake is answered 101 and the connection
// then answers every later request with CANARY; a plain request gets a normal 200.
func serveCanary(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	upgraded := false
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if upgraded { // frames, not HTTP: skip a byte and keep looking for a request line
				if _, err := br.ReadByte(); err == nil {
					continue
				}
			}
			return
		}
		switch {
		case upgraded:
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nCANARY")
		case req.Header.Get("Upgrade") == "websocket":
			upgraded = true
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
				acceptKey(req.Header.Get("Sec-WebSocket-Key")))
		default:
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
}

func acceptKey(key string) string {
	return computeAcceptKey(key)
}

func TestUpgradeRefusalsAndPlainRoutes(t *testing.T) {
	echo := startWSEcho(t)
	gw := startGateway(t, wsConfig(echo.Addr, ""))
	// The upstream refuses: its 401 and body reach the client.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/api/ws/x?deny=1", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("refused upgrade: %v, %v", err, resp)
	}
	// A route without websocket: the Upgrade header is stripped; the upstream sees a plain GET.
	_, resp, err = websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/plain/ws/x", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("upgrade on a plain route: %v, %v; want the upstream's 426", err, resp)
	}
	if h := *echo.lastHeaders.Load(); h.Get("Upgrade") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") {
		t.Fatalf("a plain route forwarded upgrade headers: %v", h)
	}
}

func TestWebSocketTooBigMessageClosesWith1009(t *testing.T) {
	echo := startWSEcho(t)
	gw := startGateway(t, wsConfig(echo.Addr, ""))
	c := dialWS(t, "ws://"+gw.Addr+"/api/ws/x")
	c.WriteMessage(websocket.BinaryMessage, make([]byte, 64<<10))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatalf("a message at the limit: %v", err)
	}
	c.WriteMessage(websocket.BinaryMessage, make([]byte, 64<<10+1))
	_, _, err := c.ReadMessage()
	if closeCodeOf(err) != websocket.CloseMessageTooBig {
		t.Fatalf("over the limit: %v, want close 1009", err)
	}
}

func TestRemovingTheRouteClosesTunnelsWith1001(t *testing.T) {
	echo := startWSEcho(t)
	gw := startGateway(t, wsConfig(echo.Addr, ""))
	c := dialWS(t, "ws://"+gw.Addr+"/api/ws/x")
	without := `
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  orders: {targets: ["` + echo.Addr + `"]}
routes:
  - {name: plain, match: {path_prefix: /plain}, upstream: orders}
`
	var cfg *config.Config = mustParse(t, without)
	start := time.Now()
	if _, err := gw.Apply(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	// Within the grace period the tunnel still works.
	c.WriteMessage(websocket.TextMessage, []byte("still here"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("during the grace period: %q, %v", msg, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	if closeCodeOf(err) != websocket.CloseGoingAway {
		t.Fatalf("after removing the route: %v, want close 1001", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the 300ms grace period", d)
	}
}

func TestShutdownClosesTunnelsWith1001(t *testing.T) {
	echo := startWSEcho(t)
	gw := startGateway(t, wsConfig(echo.Addr, ""))
	c := dialWS(t, "ws://"+gw.Addr+"/api/ws/x")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- gw.Shutdown(ctx)
	}()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	if closeCodeOf(err) != websocket.CloseGoingAway {
		t.Fatalf("on shutdown: %v, want close 1001", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestWebSocketTunnelWaitsOnItsSockets: through the listener's real connection wrappers, a
// tunnel reads both sockets itself, so an idle one holds no read buffer and no goroutine (a wrapper that hid the
// socket would make it wait in a small read instead, at more cost per message). After the
// client leaves, the tunnel and its connections are gone.
func TestWebSocketTunnelWaitsOnItsSockets(t *testing.T) {
	echo := startWSEcho(t)
	reg := prometheus.NewRegistry()
	gw := startGateway(t, wsConfig(echo.Addr, ""), func(o *server.Options) { o.Registerer = reg })
	c := dialWS(t, "ws://"+gw.Addr+"/api/ws/orders")
	if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	tunnels := gw.Snapshot().Tunnels
	if n := tunnels.SocketReaders(); n != 1 {
		t.Fatalf("tunnels reading their sockets: %d, want 1", n)
	}
	// Quiet, it holds no goroutine either: both directions wait in the gateway's poller.
	waitUntil(t, "both directions wait in the poller", func() bool { return tunnels.Waiting() == 2 })
	if v := metricValue(t, reg, "archway_websocket_directions_waiting"); v != 2 {
		t.Fatalf("archway_websocket_directions_waiting %v, want 2", v)
	}
	c.Close()
	target := gw.Snapshot().Upstreams["orders"].Targets()[0]
	for target.Tunnels() != 0 || gw.OpenConnections() != 0 {
		time.Sleep(5 * time.Millisecond) // until the tunnel has seen the close; the test's deadline bounds it
	}
}
