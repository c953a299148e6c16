package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/fasthttp/websocket"
	"golang.org/x/net/http2"
)

// TestWebSocketNextToHTTP2: on a listener offering h2, the gateway does not advertise RFC 8441
// (SETTINGS_ENABLE_CONNECT_PROTOCOL), so a browser opens its WebSocket on an HTTP/1.1
// connection, as it would here: ALPN http/1.1 on the same TLS listener, and the h2c listener
// takes an HTTP/1.1 upgrade too.
func TestWebSocketNextToHTTP2(t *testing.T) {
	echo := startWSEcho(t)
	g := startH2Gateway(t, "", fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  orders: {targets: ["%s"]}
routes:
  - {name: ws, match: {path_prefix: /api/ws}, strip_prefix: /api, upstream: orders, websocket: {}}
`, echo.Addr))

	for name, addr := range map[string]string{"h2c": g.plain, "h2": g.tls} {
		t.Run(name+"/no RFC 8441", func(t *testing.T) {
			var conn net.Conn
			var err error
			if name == "h2" {
				conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			} else {
				conn, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
				t.Fatal(err)
			}
			f, err := http2.NewFramer(conn, conn).ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			sf, ok := f.(*http2.SettingsFrame)
			if !ok {
				t.Fatalf("first frame %T", f)
			}
			if v, ok := sf.Value(http2.SettingEnableConnectProtocol); ok && v != 0 {
				t.Fatal("the server offers extended CONNECT (RFC 8441), which the gateway does not serve")
			}
		})
	}

	pem, err := os.ReadFile(g.pki.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for name, url := range map[string]string{
		"h2":  "wss://shop.test:" + portOf(g.tls) + "/api/ws/feed",
		"h2c": "ws://" + g.plain + "/api/ws/feed",
	} {
		t.Run(name+"/upgrade over HTTP/1.1", func(t *testing.T) {
			d := websocket.Dialer{
				// What a browser does after its h2 connection offered no RFC 8441: a connection
				// of its own, ALPN http/1.1.
				TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.test", NextProtos: []string{"http/1.1"}},
				NetDial: func(network, _ string) (net.Conn, error) {
					return net.Dial(network, map[string]string{"h2": g.tls, "h2c": g.plain}[name])
				},
			}
			c, resp, err := d.Dial(url, http.Header{})
			if err != nil {
				t.Fatalf("dial: %v (%v)", err, resp)
			}
			defer c.Close()
			for i := range 6 {
				msg := fmt.Sprintf("hello %d", i)
				if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
					t.Fatalf("echo %q, %v", got, err)
				}
				if i == 2 {
					// Quiet between messages, the tunnel's directions hold no goroutine: they wait in
					// the gateway's poller, the wss:// client's on the socket under TLS. (Over h2c
					// the client's connection replays the bytes the demux read to classify it, so
					// its direction keeps a goroutine.)
					want := map[string]int{"h2": 2, "h2c": 1}[name]
					waitUntil(t, fmt.Sprintf("%d directions of the tunnel wait in the poller", want), func() bool { return g.Snapshot().Tunnels.Waiting() == want })
				}
			}
			c.Close()
			waitUntil(t, "the tunnel's directions leave the poller", func() bool { return g.Snapshot().Tunnels.Waiting() == 0 })
		})
	}
}
