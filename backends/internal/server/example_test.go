package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// A service registers handlers that return errors; the server turns them into JSON error
// responses carrying the request id.
func ExampleServer() {
	srv := server.New(server.Config{Service: "greeter", Logger: slog.New(slog.DiscardHandler)})
	srv.Handle("GET", "/hello/{name}", func(ctx *fasthttp.RequestCtx) error {
		name, _ := ctx.UserValue("name").(string)
		if name == "nobody" {
			return api.NotFound("no such person")
		}
		return api.WriteJSON(ctx, 200, map[string]string{"hello": name})
	})

	ln := fasthttputil.NewInmemoryListener()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	client := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	for _, path := range []string{"/hello/ana", "/hello/nobody"} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://greeter" + path)
		req.Header.Set("X-Request-ID", "req-1")
		if err := client.Do(req, resp); err != nil {
			panic(err)
		}
		fmt.Printf("%d %s", resp.StatusCode(), resp.Body())
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	cancel()
	fmt.Println("shutdown:", <-done)
	// Output:
	// 200 {"hello":"ana"}
	// 404 {"error":"no such person","request_id":"req-1"}
	// shutdown: <nil>
}
