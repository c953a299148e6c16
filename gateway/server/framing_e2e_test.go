package server_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The request-head scanner follows each request's framing on a keep-alive connection, so a
// bare LF ending a later head is refused at once (400, closed) however the earlier requests were
// framed or sent. read_timeout is 120 s and each read has a 5 s deadline: a gateway that waits
// instead of answering fails the test.

// readAnswer reads one response from br with a deadline.
func readAnswer(t *testing.T, c net.Conn, br *bufio.Reader, what string) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %s: %v", what, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// expectClosed: the gateway closed the connection (EOF or reset), promptly.
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("after the 400 the connection is still open (%v)", err)
	}
}

func TestBareLFAfterChunkedBodyRefusedAtOnce(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, conformanceConfig(products.Addr, products.Addr))
	c, br := dialGateway(t, gw.Addr)
	chunked := "POST /api/products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"4;ext=1\r\na\n\nb\r\n" + "3\r\n\n\n\n\r\n" + "0\r\nX-Trailer: 1\r\n\r\n"
	for i := range 2 {
		resp, body := rawExchange(t, c, br, chunked)
		if resp.StatusCode != 200 {
			t.Fatalf("chunked POST %d with LFs in its body: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := rawExchange(t, c, br, "GET /api/products HTTP/1.1\r\nHost: x\r\n\n")
	if resp.StatusCode != 400 {
		t.Fatalf("bare LF after two chunked bodies: %d %s", resp.StatusCode, body)
	}
	expectClosed(t, c, br)
	if got := products.count(); got != 2 {
		t.Fatalf("the upstream received %d requests, want 2", got)
	}
}

func TestPipelinedGoodThenBareLFHead(t *testing.T) {
	for _, tc := range []struct{ name, good string }{
		{"get", "GET /api/products HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"content-length", "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\n\n\n"},
		{"chunked", "POST /api/products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			products := startUpstream(t, "products", nil)
			gw := startGateway(t, conformanceConfig(products.Addr, products.Addr))
			c, br := dialGateway(t, gw.Addr)
			// One write: the gateway reads the good request and the bad head together.
			if _, err := io.WriteString(c, tc.good+tc.good+"GET /api/products HTTP/1.1\r\nHost: x\r\n\n"); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if resp, body := readAnswer(t, c, br, "a good pipelined request"); resp.StatusCode != 200 {
					t.Fatalf("good request %d: %d %s", i, resp.StatusCode, body)
				}
			}
			if resp, body := readAnswer(t, c, br, "the bare-LF head"); resp.StatusCode != 400 {
				t.Fatalf("the pipelined bare-LF head: %d %s", resp.StatusCode, body)
			}
			expectClosed(t, c, br)
			if got := products.count(); got != 2 {
				t.Fatalf("the upstream received %d requests, want 2", got)
			}
		})
	}
}

// maskedFrame is a client WebSocket text frame with a zero mask key, so its payload (here full
// of bare LFs and text that looks like a request) is on the wire as it is.
func maskedFrame(payload string) []byte {
	return append([]byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
}

// After a successful upgrade the connection carries WebSocket frames, never scanned: bytes that
// would be a bare LF in HTTP reach the upstream untouched, whether they arrive after the 101 or
// in the same packet as the upgrade request.
func TestUpgradeThenArbitraryBytesUntouched(t *testing.T) {
	echo := startWSEcho(t)
	gw := startGateway(t, wsConfig(echo.Addr, ""))
	const payload = "a\nb\n\nGET / HTTP/1.1\n\n\r\n\n"
	handshake := "GET /api/ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	for _, together := range []bool{false, true} {
		c, br := dialGateway(t, gw.Addr)
		first := handshake
		if together {
			first += string(maskedFrame(payload))
		}
		if _, err := io.WriteString(c, first); err != nil {
			t.Fatal(err)
		}
		resp, _ := readAnswer(t, c, br, "the upgrade")
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %d", resp.StatusCode)
		}
		if !together {
			if _, err := c.Write(maskedFrame(payload)); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		echoed := make([]byte, 2+len(payload))
		if _, err := io.ReadFull(br, echoed); err != nil {
			t.Fatalf("reading the echo (sent with the request: %v): %v", together, err)
		}
		if !bytes.Equal(echoed, append([]byte{0x81, byte(len(payload))}, payload...)) {
			t.Fatalf("echo %q, want the payload %q back", echoed, payload)
		}
	}
}
