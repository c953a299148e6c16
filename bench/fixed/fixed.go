// Package fixed is the benchmark's upstream: it answers every GET with the same 1 KiB of JSON,
// echoes the body of every POST, and echoes WebSocket messages on /ws. It does as little as
// possible so that what the benchmark measures is the proxy in front of it.
package fixed

import (
	"net"
	"strings"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Body is the answer to every GET: 1 024 bytes of JSON, like a small catalogue page.
var Body = func() []byte {
	item := `{"id":1,"name":"Laptop Gaming","price":1299.99},`
	s := `{"items":[` + strings.Repeat(item, 20)
	s += `{"id":0,"pad":"` + strings.Repeat("x", 1024-len(s)-len(`{"id":0,"pad":""}]}`)) + `"}]}`
	return []byte(s)
}()

var upgrader = websocket.FastHTTPUpgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*fasthttp.RequestCtx) bool { return true },
}

// Handler serves one request.
func Handler(ctx *fasthttp.RequestCtx) {
	switch {
	case websocket.FastHTTPIsWebSocketUpgrade(ctx):
		_ = upgrader.Upgrade(ctx, echo)
	case ctx.IsPost() || ctx.IsPut():
		ctx.SetContentTypeBytes(ctx.Request.Header.ContentType())
		ctx.Response.SetBodyRaw(ctx.Request.Body())
	default:
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(Body)
	}
}

func echo(c *websocket.Conn) {
	defer c.Close()
	for {
		kind, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

// Serve answers on every listener until they close.
func Serve(lns ...net.Listener) error {
	s := &fasthttp.Server{
		Handler:               Handler,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		ReadBufferSize:        16 << 10,
		MaxRequestBodySize:    64 << 20,
		Concurrency:           1 << 20,
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- s.Serve(ln) }()
	}
	return <-errc
}
