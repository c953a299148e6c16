package forwardauth

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// authServer is a real HTTP auth service on a loopback port, answering with respond.
type authServer struct {
	url   string
	calls atomic.Int64
	mu    sync.Mutex
	last  fasthttp.RequestHeader
}

func startAuth(t *testing.T, respond func(ctx *fasthttp.RequestCtx)) *authServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &authServer{url: "http://" + ln.Addr().String() + "/auth/verify"}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		a.calls.Add(1)
		a.mu.Lock()
		ctx.Request.Header.CopyTo(&a.last)
		a.mu.Unlock()
		respond(ctx)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return a
}

func (a *authServer) lastHeader(name string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return string(a.last.Peek(name))
}

// allowUser answers 204 with X-User-Id for "Bearer good", 401 otherwise.
func allowUser(ctx *fasthttp.RequestCtx) {
	if string(ctx.Request.Header.Peek("Authorization")) != "Bearer good" {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="shop"`)
		ctx.Response.Header.Set("Connection", "close")
		ctx.SetStatusCode(401)
		ctx.SetBodyString(`{"error":"invalid token"}`)
		return
	}
	ctx.Response.Header.Set("X-User-Id", "42")
	ctx.SetStatusCode(204)
}

type recorder struct {
	called bool
	userID []string
}

func (r *recorder) Serve(x *proxy.Exchange) {
	r.called = true
	for _, v := range x.Ctx.Request.Header.PeekAll("X-User-Id") {
		r.userID = append(r.userID, string(v))
	}
	x.Ctx.SetStatusCode(200)
}

func newHandler(t *testing.T, m *Registry, fa *config.ForwardAuth, next proxy.Handler) proxy.Handler {
	t.Helper()
	if fa.RequestHeaders == nil {
		fa.RequestHeaders = []string{"Authorization", "Cookie"}
	}
	if fa.Timeout == 0 {
		fa.Timeout = config.Duration(5 * time.Second)
	}
	if fa.OnError == "" {
		fa.OnError = config.AuthOnErrorDeny
	}
	if fa.CacheTTL > 0 && fa.CacheMaxEntries == 0 {
		fa.CacheMaxEntries = 100
	}
	mw, err := m.Middleware(&config.Route{Name: "r", ForwardAuth: fa}, &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return mw(next)
}

func request(t *testing.T, raw string) *proxy.Exchange {
	t.Helper()
	ctx := &fasthttp.RequestCtx{}
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	return &proxy.Exchange{Ctx: ctx, ClientIP: netip.MustParseAddr("203.0.113.5")}
}

func TestForwardAuthDecisions(t *testing.T) {
	auth := startAuth(t, allowUser)
	m := NewRegistry()
	defer m.Close()
	fa := &config.ForwardAuth{URL: auth.url, ResponseHeaders: []string{"X-User-Id"}}

	// Allowed: the auth service's identity replaces every copy the client sent.
	next := &recorder{}
	x := request(t, "POST /api/orders?x=1 HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer good\r\nX-User-Id: 1\r\nX-User-Id: 2\r\nContent-Length: 4\r\n\r\nbody")
	newHandler(t, m, fa, next).Serve(x)
	if !next.called || len(next.userID) != 1 || next.userID[0] != "42" {
		t.Fatalf("allowed request: called %v, X-User-Id %q; want one copy, 42", next.called, next.userID)
	}
	for h, want := range map[string]string{"Authorization": "Bearer good", "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/api/orders?x=1",
		"X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.5", "Content-Length": "0"} {
		if got := auth.lastHeader(h); got != want {
			t.Errorf("subrequest %s = %q, want %q", h, got, want)
		}
	}
	if got := auth.method(); got != "POST" {
		t.Errorf("subrequest method %s, want the original POST", got)
	}

	// Refused: the auth service's 401, its challenge and body reach the client.
	next = &recorder{}
	x = request(t, "GET /api/orders HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer bad\r\n\r\n")
	newHandler(t, m, fa, next).Serve(x)
	resp := &x.Ctx.Response
	if next.called || resp.StatusCode() != 401 || string(resp.Header.Peek("WWW-Authenticate")) != `Bearer realm="shop"` ||
		string(resp.Body()) != `{"error":"invalid token"}` || resp.ConnectionClose() {
		t.Fatalf("refused request: called %v, %d %q %q close %v", next.called, resp.StatusCode(), resp.Header.Peek("WWW-Authenticate"), resp.Body(), resp.ConnectionClose())
	}
}

func TestForwardAuthRelaysRedirects(t *testing.T) {
	auth := startAuth(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Location", "https://login.example/?next=/admin")
		ctx.SetStatusCode(302)
	})
	m := NewRegistry()
	defer m.Close()
	x := request(t, "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
	newHandler(t, m, &config.ForwardAuth{URL: auth.url}, &recorder{}).Serve(x)
	if x.Ctx.Response.StatusCode() != 302 || string(x.Ctx.Response.Header.Peek("Location")) != "https://login.example/?next=/admin" {
		t.Fatalf("%d %q", x.Ctx.Response.StatusCode(), x.Ctx.Response.Header.Peek("Location"))
	}
}

func TestForwardAuthServiceDown(t *testing.T) {
	failing := startAuth(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500); ctx.SetBodyString("db down at 10.1.2.3") })
	// A port nothing listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/verify"
	ln.Close()
	// An auth service that never answers: the route's timeout ends the wait.
	hang := make(chan struct{})
	hung := startAuth(t, func(*fasthttp.RequestCtx) { <-hang })
	defer close(hang)

	m := NewRegistry()
	defer m.Close()
	for _, tc := range []struct {
		name, url string
		timeout   time.Duration
	}{
		{"5xx", failing.url, 5 * time.Second},
		{"refused", refused, 5 * time.Second},
		{"timeout", hung.url, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, onError := range []string{config.AuthOnErrorDeny, config.AuthOnErrorAllow} {
				next := &recorder{}
				x := request(t, "GET / HTTP/1.1\r\nHost: a\r\nX-User-Id: 1\r\n\r\n")
				x.RequestID = []byte("req-1")
				fa := &config.ForwardAuth{URL: tc.url, ResponseHeaders: []string{"X-User-Id"}, OnError: onError, Timeout: config.Duration(tc.timeout)}
				newHandler(t, m, fa, next).Serve(x)
				body := string(x.Ctx.Response.Body())
				switch onError {
				case config.AuthOnErrorDeny:
					if next.called || x.Ctx.Response.StatusCode() != 503 || body != `{"error":"auth service unavailable","request_id":"req-1"}`+"\n" {
						t.Errorf("deny: called %v, %d %s", next.called, x.Ctx.Response.StatusCode(), body)
					}
				case config.AuthOnErrorAllow:
					if !next.called || len(next.userID) != 0 {
						t.Errorf("allow: called %v, X-User-Id %q (a client's claim must not survive fail-open)", next.called, next.userID)
					}
				}
			}
		})
	}
}

func TestForwardAuthCache(t *testing.T) {
	auth := startAuth(t, allowUser)
	m := NewRegistry()
	defer m.Close()
	fa := &config.ForwardAuth{URL: auth.url, ResponseHeaders: []string{"X-User-Id"}, CacheTTL: config.Duration(time.Hour)}
	h := newHandler(t, m, fa, &recorder{})
	for i := range 3 {
		next := &recorder{}
		h.(*handler).next = next
		x := request(t, "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\nX-User-Id: 7\r\n\r\n")
		h.Serve(x)
		if !next.called || len(next.userID) != 1 || next.userID[0] != "42" {
			t.Fatalf("request %d: called %v, X-User-Id %q", i, next.called, next.userID)
		}
	}
	if n := auth.calls.Load(); n != 1 {
		t.Fatalf("three requests with one credential asked the auth service %d times, want 1", n)
	}
	// Refusals are not cached: each bad token is asked again.
	for range 2 {
		h.Serve(request(t, "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer bad\r\n\r\n"))
	}
	if n := auth.calls.Load(); n != 3 {
		t.Fatalf("auth service asked %d times, want 3", n)
	}
}

func TestDecisionCacheExpiryAndBound(t *testing.T) {
	c := newDecisionCache(time.Minute, 2)
	now := time.Unix(1000, 0)
	c.put([]byte("a"), [][]byte{[]byte("1")}, now)
	if v, ok := c.get([]byte("a"), now.Add(59*time.Second)); !ok || string(v[0]) != "1" {
		t.Fatal("a fresh decision was not found")
	}
	if _, ok := c.get([]byte("a"), now.Add(time.Minute)); ok {
		t.Fatal("an expired decision was served")
	}
	c.put([]byte("b"), nil, now)
	c.put([]byte("c"), nil, now)
	if len(c.entries) > 2 {
		t.Fatalf("%d entries kept, bound 2", len(c.entries))
	}
}

func TestNoSectionNoMiddleware(t *testing.T) {
	m := NewRegistry()
	defer m.Close()
	if mw, err := m.Middleware(&config.Route{}, &config.Config{}); mw != nil || err != nil {
		t.Fatal("a route without forward_auth got a middleware (it must cost nothing)")
	}
}

func (a *authServer) method() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return string(a.last.Method())
}
