package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

type claims map[string]string

func (c claims) Claim(name string) ([]byte, bool) { v, ok := c[name]; return []byte(v), ok }

func TestMiddlewareKeys(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8:1:2::7")
	for _, tc := range []struct {
		key     string
		headers []string
		claims  proxy.ClaimGetter
		want    string
	}{
		{"client_ip", nil, nil, "ip:2001:db8:1:2::/64"},
		{"route", nil, nil, "route"},
		{"header:X-Api-Key", []string{"X-Api-Key", "k1"}, nil, "h:k1"},
		{"header:x-api-key", nil, nil, "ip:2001:db8:1:2::/64"},
		{"jwt:sub", nil, claims{"sub": "u1"}, "j:u1"},
		{"jwt:sub", nil, nil, "ip:2001:db8:1:2::/64"},
		{"jwt:sub", nil, claims{"other": "x"}, "ip:2001:db8:1:2::/64"},
	} {
		reg := NewRegistry()
		route := &config.Route{Name: "r", RateLimit: &config.RateLimit{Rate: config.Rate{N: 10, Per: time.Second}, Burst: 1, Key: tc.key, Scope: "local", MaxKeys: 10}}
		m := reg.Middleware(route, nil)(proxy.HandlerFunc(func(*proxy.Exchange) {})).(*middleware)
		ctx := &fasthttp.RequestCtx{}
		for i := 0; i+1 < len(tc.headers); i += 2 {
			ctx.Request.Header.Set(tc.headers[i], tc.headers[i+1])
		}
		x := &proxy.Exchange{Ctx: ctx, ClientIP: ip, Claims: tc.claims}
		if got := string(m.appendKey(nil, x)); got != tc.want {
			t.Errorf("key %s: %q, want %q", tc.key, got, tc.want)
		}
	}
}

func newTestMiddleware(burst int) (proxy.Handler, *proxy.Exchange) {
	reg := NewRegistry()
	route := &config.Route{Name: "r", RateLimit: &config.RateLimit{Rate: config.Rate{N: 1_000_000, Per: time.Second}, Burst: burst, Key: "client_ip", Scope: "local", MaxKeys: 100}}
	h := reg.Middleware(route, nil)(proxy.HandlerFunc(func(x *proxy.Exchange) { x.Ctx.Response.SetStatusCode(200) }))
	x := &proxy.Exchange{Ctx: &fasthttp.RequestCtx{}, ClientIP: netip.MustParseAddr("192.0.2.1"), RequestID: []byte("id")}
	return h, x
}

func TestMiddlewareAllocatesNothing(t *testing.T) {
	h, x := newTestMiddleware(1_000_000)
	h.Serve(x)
	if n := testing.AllocsPerRun(1000, func() { x.Ctx.Response.Reset(); h.Serve(x) }); n != 0 {
		t.Fatalf("a limited route's request allocates %.1f times", n)
	}
	if !strings.Contains(x.Ctx.Response.Header.String(), "\r\nRateLimit-Limit: 1000000\r\n") {
		t.Fatalf("headers: %s", x.Ctx.Response.Header.String())
	}
}

// TestMiddlewareReplacesUpstreamRateLimitHeaders: an upstream's own RateLimit-* headers, in any
// case and any number of copies, give way to the gateway's, one copy each; other headers stay.
func TestMiddlewareReplacesUpstreamRateLimitHeaders(t *testing.T) {
	for _, upstream := range [][]string{
		nil,
		{"ratelimit-limit", "5", "RateLimit-Limit", "6", "RATELIMIT-RESET", "99", "X-Ratelimit-Limit", "7"},
		{"Ratelimit-Remaining", "0"},
	} {
		reg := NewRegistry()
		route := &config.Route{Name: "r", RateLimit: &config.RateLimit{Rate: config.Rate{N: 10, Per: time.Second}, Burst: 3, Key: "route", Scope: "local", MaxKeys: 10}}
		h := reg.Middleware(route, nil)(proxy.HandlerFunc(func(x *proxy.Exchange) {
			for i := 0; i+1 < len(upstream); i += 2 {
				x.Ctx.Response.Header.Add(upstream[i], upstream[i+1])
			}
		}))
		x := &proxy.Exchange{Ctx: &fasthttp.RequestCtx{}, ClientIP: netip.MustParseAddr("192.0.2.1")}
		h.Serve(x)
		got := map[string][]string{}
		for k, v := range x.Ctx.Response.Header.All() {
			got[strings.ToLower(string(k))] = append(got[strings.ToLower(string(k))], string(v))
		}
		for name, want := range map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": "2", "ratelimit-reset": "1"} {
			if len(got[name]) != 1 || got[name][0] != want {
				t.Errorf("upstream %q: %s = %q, want one copy %q", upstream, name, got[name], want)
			}
		}
		if len(upstream) > 6 && strings.Join(got["x-ratelimit-limit"], ",") != "7" {
			t.Errorf("upstream %q: X-Ratelimit-Limit = %q, want it untouched", upstream, got["x-ratelimit-limit"])
		}
	}
}

func BenchmarkMiddlewareLocal(b *testing.B) {
	h, x := newTestMiddleware(1_000_000)
	b.ReportAllocs()
	for range b.N {
		x.Ctx.Response.Reset()
		h.Serve(x)
	}
}

// BenchmarkMiddlewareLocalParallel is the benchmark scenario's shape: every goroutine's requests
// come from one client address, so they all check one bucket and count on one route.
func BenchmarkMiddlewareLocalParallel(b *testing.B) {
	reg := NewRegistry()
	route := &config.Route{Name: "r", RateLimit: &config.RateLimit{Rate: config.Rate{N: 1_000_000, Per: time.Second}, Burst: 1_000_000, Key: "client_ip", Scope: "local", MaxKeys: 100}}
	h := reg.Middleware(route, nil)(proxy.HandlerFunc(func(x *proxy.Exchange) { x.Ctx.Response.SetStatusCode(200) }))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		x := &proxy.Exchange{Ctx: &fasthttp.RequestCtx{}, ClientIP: netip.MustParseAddr("192.0.2.1"), RequestID: []byte("id")}
		for pb.Next() {
			x.Ctx.Response.Reset()
			h.Serve(x)
		}
	})
}
