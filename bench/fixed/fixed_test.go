package fixed

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

func TestFixedUpstream(t *testing.T) {
	if len(Body) != 1024 || !json.Valid(Body) {
		t.Fatalf("body is %d bytes, valid JSON %v", len(Body), json.Valid(Body))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go Serve(ln)
	url := "http://" + ln.Addr().String()

	code, body, err := fasthttp.Get(nil, url+"/plain")
	if err != nil || code != 200 || !bytes.Equal(body, Body) {
		t.Fatalf("GET: %d %v %q", code, err, body)
	}

	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI(url + "/plain")
	req.Header.SetMethod("POST")
	payload := bytes.Repeat([]byte("a"), 4096)
	req.SetBody(payload)
	if err := fasthttp.Do(req, resp); err != nil || !bytes.Equal(resp.Body(), payload) {
		t.Fatalf("POST echo: %v, %d bytes", err, len(resp.Body()))
	}

	c, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hello" {
		t.Fatalf("ws echo: %q %v", msg, err)
	}
}
