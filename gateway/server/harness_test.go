package server_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"

	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/valyala/fasthttp"
)

// seenRequest is a request as a real upstream received it.
type seenRequest struct {
	Method, URI, Host string
	Headers           map[string][]string // canonical name → every value, in order
	BodyLen           int
}

// upstreamServer is a real fasthttp server on a loopback port that records what it receives.
type upstreamServer struct {
	Addr     string
	Name     string
	accepted atomic.Int64
	srv      *fasthttp.Server

	mu       sync.Mutex
	requests []seenRequest
	handler  func(ctx *fasthttp.RequestCtx)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startUpstream serves handler (nil: answer 200 with the upstream's name and the request URI).
func startUpstream(t testing.TB, name string, handler func(ctx *fasthttp.RequestCtx)) *upstreamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamServer{Addr: ln.Addr().String(), Name: name, handler: handler}
	u.srv = &fasthttp.Server{
		Handler:            u.serve,
		ReadTimeout:        10 * time.Second,
		IdleTimeout:        60 * time.Second,
		StreamRequestBody:  true,
		MaxRequestBodySize: 200 << 20,
		Logger:             quietLogger{},
	}
	go func() { _ = u.srv.Serve(countingListener{ln, &u.accepted}) }()
	t.Cleanup(func() { _ = u.srv.Shutdown() })
	return u
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

func (u *upstreamServer) serve(ctx *fasthttp.RequestCtx) {
	seen := seenRequest{Method: string(ctx.Method()), URI: string(ctx.RequestURI()), Host: string(ctx.Host()), Headers: map[string][]string{}}
	for k, v := range ctx.Request.Header.All() {
		key := http.CanonicalHeaderKey(string(k))
		seen.Headers[key] = append(seen.Headers[key], string(v))
	}
	if ctx.Request.Header.ConnectionClose() {
		seen.Headers["Connection"] = append(seen.Headers["Connection"], "close")
	}
	if stream := ctx.RequestBodyStream(); stream != nil && u.handler == nil {
		n, _ := io.Copy(io.Discard, stream)
		seen.BodyLen = int(n)
	}
	u.mu.Lock()
	u.requests = append(u.requests, seen)
	u.mu.Unlock()
	if u.handler != nil {
		u.handler(ctx)
		return
	}
	ctx.SetContentType("text/plain")
	fmt.Fprintf(ctx, "%s %s", u.Name, ctx.RequestURI())
}

func (u *upstreamServer) last(t testing.TB) seenRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.requests) == 0 {
		t.Fatalf("upstream %s received nothing", u.Name)
	}
	return u.requests[len(u.requests)-1]
}

func (u *upstreamServer) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.requests)
}

// gateway is an in-process Archway serving a real loopback listener.
type gateway struct {
	*server.Gateway
	Addr string
	URL  string
}

func mustParse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return cfg
}

func startGateway(t testing.TB, yaml string, opts ...func(*server.Options)) *gateway {
	t.Helper()
	cfg := mustParse(t, yaml)
	o := server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range opts {
		f(&o)
	}
	gw, err := server.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return &gateway{Gateway: gw, Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
}

// response is what a client got back.
type response struct {
	Status  int
	Headers http.Header
	Body    string
	// Closed reports whether the gateway closed the connection after this response.
	Closed bool
}

// rawRequest writes raw bytes on a fresh connection and reads one response; it also reports
// whether the connection was closed afterwards.
func rawRequest(t testing.TB, addr, raw string) response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := response{Status: resp.StatusCode, Headers: resp.Header, Body: string(body)}
	// The connection must be closed: a read returns EOF (not a timeout) promptly.
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	r.Closed = err == io.EOF || (err != nil && !isTimeout(err))
	return r
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func do(t testing.TB, method, url string, body io.Reader, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "Host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Headers: resp.Header, Body: string(b), Closed: resp.Close}
}

func get(t testing.TB, url string, headers ...string) response {
	t.Helper()
	return do(t, http.MethodGet, url, nil, headers...)
}

func expectStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body %q", r.Status, want, r.Body)
	}
}

type (
	netConn   = net.Conn
	netDialer = net.Dialer
)

// computeAcceptKey is RFC 6455's Sec-WebSocket-Accept for a client key.
func computeAcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func (u *upstreamServer) requestsSnapshot() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.requests...)
}

// tryGet is get without failing the test: for load loops running in goroutines.
func tryGet(url string) (response, error) {
	resp, err := client.Get(url)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Headers: resp.Header, Body: string(b)}, err
}
