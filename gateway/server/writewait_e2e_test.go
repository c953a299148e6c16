package server_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
)

// server.write_and_wait on, as a line of parkingConfig's server section.
const writeWaitOn = "  write_and_wait: 20ms"

func writeWaitConfig(upstream, extra string) string {
	return fmt.Sprintf(`
server:
  write_and_wait: 20ms
%s
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  echo: {targets: ["%s"]}
routes:
  - {name: echo, match: {path_prefix: /}, upstream: echo}
`, extra, upstream)
}

// TestWriteAndWaitThroughTheGateway: with server.write_and_wait on, keep-alive requests, an
// answer too large to hold, a pipelined trio in one write and a client that half-closes are
// all answered byte for byte.
func TestWriteAndWaitThroughTheGateway(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, writeWaitConfig(up.Addr, ""))
	c := dialPlain(t, g.Addr)
	for i := range 30 {
		uri := fmt.Sprintf("/keep-alive/%d", i)
		c.send(t, get1(uri))
		c.expect(t, "GET", uri, nil)
	}
	big := bytes.Repeat([]byte("held?\x00\xff"), 4000)
	c.send(t, post("/big", big))
	c.expect(t, "POST", "/big", big)
	small := []byte("two of three")
	c.send(t, get1("/p/1")+post("/p/2", small)+get1("/p/3"))
	c.expect(t, "GET", "/p/1", nil)
	c.expect(t, "POST", "/p/2", small)
	c.expect(t, "GET", "/p/3", nil)

	h := dialPlain(t, g.Addr)
	h.send(t, get1("/half-close"))
	if err := h.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	h.expect(t, "GET", "/half-close", nil)
	if rest, err := io.ReadAll(h.br); err != nil || len(rest) != 0 {
		t.Fatalf("after the answer to a half-closed connection: %q, %v; want end-of-file", rest, err)
	}
}

// TestWriteAndWaitWithParking: parking still parks and wakes connections whose answers went
// out through the wait (it parks after the re-check delay and the park delay).
func TestWriteAndWaitWithParking(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, parkingConfig(up.Addr, writeWaitOn))
	checkServedAfterParking(t, g.Gateway, dialPlain(t, g.Addr))
}

// TestWriteAndWaitProxyProtocol: a PROXY protocol listener keeps the ordinary way (its header
// reader buffers) and keeps working with the setting on.
func TestWriteAndWaitProxyProtocol(t *testing.T) {
	up := startUpstream(t, "app", nil)
	g := startGateway(t, writeWaitConfig(up.Addr, `  listeners:
    - {name: lb, addr: "127.0.0.1:0", proxy_protocol: {trusted_proxies: [127.0.0.0/8]}}`))
	c := dialPlain(t, g.Addr)
	c.send(t, "PROXY TCP4 203.0.113.9 127.0.0.1 51000 80\r\n"+get1("/one"))
	for i, uri := range []string{"/one", "/two", "/three"} {
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
		if i < 2 {
			c.send(t, get1([]string{"/one", "/two", "/three"}[i+1]))
		}
	}
}

// TestWriteAndWaitTLS: a TLS listener keeps the ordinary way (crypto/tls encrypts in Write)
// and keeps working with the setting on.
func TestWriteAndWaitTLS(t *testing.T) {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "wait")
	cert := ca.Issue(t, "shop", listenertest.Options{}, "shop.test")
	up := echoUpstream(t)
	g := startGateway(t, writeWaitConfig(up.Addr, fmt.Sprintf(`  listeners:
    - name: https
      addr: "127.0.0.1:0"
      tls: {certificates: [{cert: %s, key: %s}]}`, cert.CertFile, cert.KeyFile)))
	tc, err := tls.Dial("tcp", g.Addr, &tls.Config{RootCAs: ca.Pool, ServerName: "shop.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	c := &parkedClient{Conn: tc, br: bufio.NewReader(tc)}
	for i := range 10 {
		uri := fmt.Sprintf("/tls/%d", i)
		c.send(t, get1(uri))
		c.expect(t, "GET", uri, nil)
	}
}

// TestWriteAndWaitWebSocketAfterKeepAlive: on a connection whose previous answer went out
// through the wait, an upgrade gets its 101 before the tunnel waits for the client, and
// messages go both ways; a fresh connection upgrades too.
func TestWriteAndWaitWebSocketAfterKeepAlive(t *testing.T) {
	e := startWSEcho(t)
	g := startGateway(t, "server: {write_and_wait: 20ms}\n"+wsConfig(e.Addr, ""))
	c := dialPlain(t, g.Addr)
	for range 3 {
		c.send(t, get1("/plain"))
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.send(t, "GET /api/ws HTTP/1.1\r\nHost: shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status %d", resp.StatusCode)
	}
	for _, msg := range []string{"hello", strings.Repeat("m", 100)} {
		// A masked text frame, as a client sends it.
		mask := [4]byte{1, 2, 3, 4}
		frame := []byte{0x81, 0x80 | byte(len(msg)), mask[0], mask[1], mask[2], mask[3]}
		for i := range len(msg) {
			frame = append(frame, msg[i]^mask[i%4])
		}
		c.send(t, string(frame))
		head := make([]byte, 2)
		if _, err := io.ReadFull(c.br, head); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, head[1]&0x7f)
		if _, err := io.ReadFull(c.br, got); err != nil {
			t.Fatal(err)
		}
		if head[0] != 0x81 || string(got) != msg {
			t.Fatalf("echo: frame %x %q, want %q", head, got, msg)
		}
	}
	ws := dialWS(t, "ws://"+g.Addr+"/api/ws")
	if err := ws.WriteMessage(1, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "fresh" {
		t.Fatalf("echo on a fresh connection: %q, %v", m, err)
	}
}
