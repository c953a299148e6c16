package h2

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

type quiet struct{}

func (quiet) Printf(string, ...any) {}

var testSettings = Settings{
	MaxConcurrentStreams: 100, MaxHeaderListBytes: 16 << 10, IdleTimeout: time.Minute,
	ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	MaxUploadBufferPerStream: 1 << 20, MaxUploadBufferPerConnection: 4 << 20,
}

// forEachEngine runs f as a subtest for each HTTP/2 engine, with testSettings naming it.
func forEachEngine(t *testing.T, f func(t *testing.T, s Settings)) {
	for _, e := range []struct {
		name   string
		engine Engine
	}{{"native", EngineNative}, {"xnet", EngineXNet}} {
		s := testSettings
		s.Engine = e.engine
		t.Run(e.name, func(t *testing.T) { f(t, s) })
	}
}

// serveH2CWith serves handler on an h2c listener: HTTP/2 through a Server with the settings s,
// HTTP/1.1 through fasthttp, as the gateway does. It returns the address and the HTTP/2 server.
func serveH2CWith(t *testing.T, s Settings, handler fasthttp.RequestHandler) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	parseErr := func(ctx *fasthttp.RequestCtx, err error) {
		var small *fasthttp.ErrSmallBuffer
		if errors.As(err, &small) {
			ctx.SetStatusCode(fasthttp.StatusRequestHeaderFieldsTooLarge)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
	}
	srv := NewServer(s, Handler{Serve: handler, ParseError: parseErr, Logger: quiet{}})
	fast := &fasthttp.Server{Handler: handler, Logger: quiet{}}
	d := NewDemux(ln, srv, false, func() time.Duration { return 5 * time.Second })
	served := make(chan struct{})
	go func() { defer close(served); _ = fast.Serve(d) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fast.ShutdownWithContext(ctx)
		_ = srv.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String(), srv
}

func h2cTransport(t *testing.T) *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// trailerBody is an upstream-like streamed body: once it ends, it puts the trailer values into
// the response header, as a transport reading an HTTP/2 or chunked upstream response does.
type trailerBody struct {
	r    io.Reader
	resp *fasthttp.Response
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.resp.Header.Set("Grpc-Status", "0")
		b.resp.Header.Set("Grpc-Message", "all good")
	}
	return n, err
}

func TestStreamCarriesTrailersInterimAndBody(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
			if _, ok := ctx.Conn().(*StreamConn); !ok {
				ctx.SetStatusCode(fasthttp.StatusTeapot) // HTTP/1.1 on the same listener
				ctx.SetBodyString("http/1.1")
				return
			}
			var early fasthttp.ResponseHeader
			early.SetStatusCode(fasthttp.StatusEarlyHints)
			early.Set("Link", "</style.css>; rel=preload")
			early.Set("Connection", "keep-alive") // forbidden in HTTP/2: dropped
			ctx.Conn().(*StreamConn).WriteInterim(&early)

			body, _ := io.ReadAll(ctx.RequestBodyStream())
			ctx.Response.Header.SetContentType("application/grpc")
			if err := ctx.Response.Header.AddTrailer("Grpc-Status, Grpc-Message"); err != nil {
				t.Error(err)
			}
			ctx.Response.Header.Set("Connection", "close") // connection-specific: never sent
			ctx.Response.SetBodyStream(&trailerBody{r: strings.NewReader("echo:" + string(body)), resp: &ctx.Response}, -1)
		})

		var interim []int
		var links []string
		c := &http.Client{Transport: h2cTransport(t)}
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/svc/Call", strings.NewReader("ping"))
		req = req.WithContext(withInterim(req.Context(), func(code int, h http.Header) {
			interim = append(interim, code)
			links = append(links, h.Get("Link"))
			if h.Get("Connection") != "" {
				t.Errorf("interim response carried Connection")
			}
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "echo:ping" {
			t.Fatalf("%s %q", resp.Proto, body)
		}
		if resp.Header.Get("Connection") != "" || resp.Header.Get("Link") != "" {
			t.Errorf("final header %v", resp.Header)
		}
		if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "all good" {
			t.Errorf("trailers %v", resp.Trailer)
		}
		if len(interim) != 1 || interim[0] != 103 || links[0] != "</style.css>; rel=preload" {
			t.Errorf("interim %v %v", interim, links)
		}

		// HTTP/1.1 on the same listener reaches fasthttp, whether its first read is short or not.
		for _, raw := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "P"} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if raw == "P" { // one byte that matches the preface, then the rest
				_, _ = conn.Write([]byte("P"))
				raw = "OST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
			}
			_, _ = conn.Write([]byte(raw))
			r, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			conn.Close()
			if r.StatusCode != 418 || string(b) != "http/1.1" {
				t.Fatalf("HTTP/1.1: %d %q", r.StatusCode, b)
			}
		}
	})
}

func withInterim(ctx context.Context, f func(int, http.Header)) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		f(code, http.Header(h))
		return nil
	}})
}

func TestHeadOverTheLimitIs431(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
		c := &http.Client{Transport: h2cTransport(t)}
		for _, tc := range []struct {
			size int
			want int
		}{{100, 200}, {16300, 431}} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			req.Header.Set("X-Big", strings.Repeat("a", tc.size))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%d-byte field: %d, want %d", tc.size, resp.StatusCode, tc.want)
			}
		}
	})
}
