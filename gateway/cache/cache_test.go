package cache

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// harness runs a route's cache in front of a handler standing in for the forwarder.
type harness struct {
	reg   *Registry
	h     proxy.Handler
	calls atomic.Int64
}

func newHarness(t testing.TB, c config.Cache, upstream func(ctx *fasthttp.RequestCtx)) *harness {
	t.Helper()
	return newExchangeHarness(t, c, func(x *proxy.Exchange) { upstream(x.Ctx) })
}

// newExchangeHarness is newHarness with an upstream that sees the exchange (to fail it).
func newExchangeHarness(t testing.TB, c config.Cache, upstream func(x *proxy.Exchange)) *harness {
	t.Helper()
	if c.TTL == 0 {
		c.TTL = config.Duration(time.Minute)
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = 1 << 20
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 64 << 20
	}
	c.Store = "memory"
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{reg: NewRegistry(ctx, nil)}
	t.Cleanup(func() { cancel(); h.reg.Wait() })
	route := &config.Route{Name: "r", Cache: &c}
	mw := h.reg.Middleware(route, nil)
	h.reg.Commit(&config.Config{Routes: []*config.Route{route}})
	h.h = mw(proxy.HandlerFunc(func(x *proxy.Exchange) {
		h.calls.Add(1)
		upstream(x)
	}))
	return h
}

// do sends one request through the cache; headers are name, value pairs.
func (h *harness) do(method, target string, headers ...string) *fasthttp.Response {
	return h.doX(method, target, nil, headers...)
}

// doX is do with a hook that adjusts the exchange (peer trust, header facts) before it is served.
func (h *harness) doX(method, target string, prep func(x *proxy.Exchange), headers ...string) *fasthttp.Response {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(target)
	ctx.Request.Header.SetHost("shop.example")
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "Host") {
			ctx.Request.Header.SetHost(headers[i+1])
			continue
		}
		ctx.Request.Header.Add(headers[i], headers[i+1])
	}
	path, query, _ := strings.Cut(target, "?")
	x := &proxy.Exchange{Ctx: ctx, Route: &proxy.Route{Name: "r", Timeout: 5 * time.Second}, Path: []byte(path), Query: []byte(query),
		ClientIP: netip.MustParseAddr("192.0.2.1")}
	x.Method = methodGet
	if method == "HEAD" {
		x.Method = methodHead
	} else if method != "GET" {
		x.Method = protocol.MethodIndex([]byte(method))
	}
	if prep != nil {
		prep(x)
	}
	h.h.Serve(x)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	return resp
}

func body(s string, hdr ...string) func(ctx *fasthttp.RequestCtx) {
	return func(ctx *fasthttp.RequestCtx) {
		for i := 0; i+1 < len(hdr); i += 2 {
			ctx.Response.Header.Add(hdr[i], hdr[i+1])
		}
		ctx.Response.SetBodyString(s)
	}
}

func xcache(r *fasthttp.Response) string { return string(r.Header.Peek("X-Cache")) }

func TestCacheRules(t *testing.T) {
	type req struct {
		method, target string
		headers        []string
		wantXCache     string
		wantStatus     int
	}
	for _, tc := range []struct {
		name      string
		cfg       config.Cache
		upstream  func(*fasthttp.RequestCtx)
		reqs      []req
		wantCalls int64
	}{
		{"miss then hit", config.Cache{}, body("a"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "HIT", 200}, {"HEAD", "/p", nil, "HIT", 200},
		}, 1},
		{"query order and host case share an entry", config.Cache{}, body("a"), []req{
			{"GET", "/p?b=2&a=1", nil, "MISS", 200}, {"GET", "/p?a=1&b=2", []string{"Host", "SHOP.example"}, "HIT", 200},
			{"GET", "/p?a=1", nil, "MISS", 200}, {"GET", "/p?a=1&b=2", []string{"Host", "other.example"}, "MISS", 200},
		}, 3},
		{"other methods pass", config.Cache{}, body("a"), []req{
			{"POST", "/p", nil, "", 200}, {"POST", "/p", nil, "", 200},
		}, 2},
		{"no-store", config.Cache{}, body("a", "Cache-Control", "no-store"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "MISS", 200},
		}, 2},
		{"private", config.Cache{}, body("a", "Cache-Control", "private, max-age=60"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "MISS", 200},
		}, 2},
		{"no-cache", config.Cache{}, body("a", "Cache-Control", "no-cache"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "MISS", 200},
		}, 2},
		{"set-cookie not stored", config.Cache{}, body("a", "Set-Cookie", "sid=1"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "MISS", 200},
		}, 2},
		{"authorization and cookie bypass", config.Cache{}, body("a"), []req{
			{"GET", "/p", []string{"Authorization", "Bearer x"}, "BYPASS", 200}, {"GET", "/p", []string{"Cookie", "sid=1"}, "BYPASS", 200},
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", []string{"Cookie", "sid=1"}, "BYPASS", 200},
		}, 4},
		{"authorized route stores them", config.Cache{Authorized: true}, body("a"), []req{
			{"GET", "/p", []string{"Authorization", "Bearer x"}, "MISS", 200}, {"GET", "/p", []string{"Authorization", "Bearer x"}, "HIT", 200},
		}, 1},
		{"request no-store and no-cache", config.Cache{}, body("a"), []req{
			{"GET", "/p", []string{"Cache-Control", "no-store"}, "BYPASS", 200}, {"GET", "/p", nil, "MISS", 200},
			{"GET", "/p", []string{"Cache-Control", "no-cache"}, "MISS", 200}, {"GET", "/p", []string{"Pragma", "no-cache"}, "MISS", 200},
			{"GET", "/p", nil, "HIT", 200},
		}, 4},
		{"range bypasses", config.Cache{}, body("a"), []req{
			{"GET", "/p", []string{"Range", "bytes=0-1"}, "BYPASS", 200},
		}, 1},
		{"uncacheable status without freshness", config.Cache{}, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500) }, []req{
			{"GET", "/p", nil, "MISS", 500}, {"GET", "/p", nil, "MISS", 500},
		}, 2},
		{"404 is heuristically cacheable", config.Cache{}, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(404) }, []req{
			{"GET", "/p", nil, "MISS", 404}, {"GET", "/p", nil, "HIT", 404},
		}, 1},
		{"configured vary", config.Cache{Vary: []string{"Accept-Encoding"}}, func(ctx *fasthttp.RequestCtx) {
			ctx.Response.SetBodyString("enc=" + string(ctx.Request.Header.Peek("Accept-Encoding")))
		}, []req{
			{"GET", "/p", []string{"Accept-Encoding", "gzip"}, "MISS", 200}, {"GET", "/p", []string{"Accept-Encoding", "br"}, "MISS", 200},
			{"GET", "/p", []string{"Accept-Encoding", "gzip"}, "HIT", 200},
		}, 2},
		{"upstream vary", config.Cache{}, func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Accept-Language")
			ctx.Response.SetBodyString("lang=" + string(ctx.Request.Header.Peek("Accept-Language")))
		}, []req{
			{"GET", "/p", []string{"Accept-Language", "fr"}, "MISS", 200}, {"GET", "/p", []string{"Accept-Language", "de"}, "MISS", 200},
			{"GET", "/p", []string{"Accept-Language", "fr"}, "HIT", 200}, {"GET", "/p", []string{"Accept-Language", "de"}, "HIT", 200},
		}, 2},
		{"vary star", config.Cache{}, body("a", "Vary", "*"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "MISS", 200},
		}, 2},
		{"too large", config.Cache{MaxEntryBytes: 4}, body("abcdef"), []req{
			{"GET", "/p", nil, "MISS", 200}, {"GET", "/p", nil, "MISS", 200},
		}, 2},
		{"conditional requests answered from cache", config.Cache{}, body("a", "ETag", `"v1"`, "Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT"), []req{
			{"GET", "/p", []string{"If-None-Match", `"v1"`}, "MISS", 304},
			{"GET", "/p", []string{"If-None-Match", `W/"v0", "v1"`}, "HIT", 304},
			{"GET", "/p", []string{"If-None-Match", `"v2"`}, "HIT", 200},
			{"GET", "/p", []string{"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}, "HIT", 304},
			{"GET", "/p", []string{"If-Modified-Since", "Sun, 01 Jan 2006 15:04:05 GMT"}, "HIT", 200},
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg, tc.upstream)
			for i, r := range tc.reqs {
				resp := h.do(r.method, r.target, r.headers...)
				if got := xcache(resp); got != r.wantXCache || resp.StatusCode() != r.wantStatus {
					t.Fatalf("request %d %s %s %v: X-Cache %q status %d, want %q %d", i, r.method, r.target, r.headers, got, resp.StatusCode(), r.wantXCache, r.wantStatus)
				}
				if r.wantStatus == 304 && len(resp.Body()) != 0 {
					t.Fatalf("request %d: 304 with a body", i)
				}
			}
			if got := h.calls.Load(); got != tc.wantCalls {
				t.Fatalf("upstream called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestCacheVariantsServeTheirOwnBody(t *testing.T) {
	h := newHarness(t, config.Cache{}, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Vary", "Accept-Language")
		ctx.Response.SetBodyString("lang=" + string(ctx.Request.Header.Peek("Accept-Language")))
	})
	h.do("GET", "/p", "Accept-Language", "fr")
	h.do("GET", "/p", "Accept-Language", "de")
	for _, lang := range []string{"fr", "de"} {
		if r := h.do("GET", "/p", "Accept-Language", lang); string(r.Body()) != "lang="+lang {
			t.Fatalf("Accept-Language %s got %q", lang, r.Body())
		}
	}
}

func TestCacheSetCookieAllowedIsReplayed(t *testing.T) {
	h := newHarness(t, config.Cache{SetCookie: true}, body("a", "Set-Cookie", "sid=secret", "Set-Cookie", "theme=dark"))
	if r := h.do("GET", "/p"); len(r.Header.Peek("Set-Cookie")) == 0 {
		t.Fatal("the response that set the cookie lost it")
	}
	r := h.do("GET", "/p")
	var cookies []string
	for _, v := range r.Header.Cookies() {
		cookies = append(cookies, string(v))
	}
	if xcache(r) != "HIT" || strings.Join(cookies, "|") != "sid=secret|theme=dark" {
		t.Fatalf("hit %q replays Set-Cookie %q, want both cookies as stored", xcache(r), cookies)
	}
}

func TestCacheFreshnessAndAge(t *testing.T) {
	h := newHarness(t, config.Cache{TTL: config.Duration(time.Hour)}, body("a", "Cache-Control", "max-age=2", "Age", "1"))
	h.do("GET", "/p")
	r := h.do("GET", "/p")
	if xcache(r) != "HIT" || string(r.Header.Peek("Age")) != "1" {
		t.Fatalf("X-Cache %q Age %q, want HIT and the upstream's age 1", xcache(r), r.Header.Peek("Age"))
	}
	time.Sleep(1100 * time.Millisecond) // max-age 2 minus Age 1: stale after one second
	if r := h.do("GET", "/p"); xcache(r) != "MISS" {
		t.Fatalf("after max-age: X-Cache %q, want MISS (max-age wins over the route ttl)", xcache(r))
	}
}

func TestCacheStaleWhileRevalidate(t *testing.T) {
	var version atomic.Int64
	h := newHarness(t, config.Cache{StaleWhileRevalidate: config.Duration(10 * time.Second)}, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=1")
		ctx.Response.SetBodyString(fmt.Sprint("v", version.Add(1)))
	})
	h.do("GET", "/p")
	time.Sleep(1100 * time.Millisecond)
	r := h.do("GET", "/p")
	if xcache(r) != "STALE" || string(r.Body()) != "v1" {
		t.Fatalf("expired entry: X-Cache %q body %q, want STALE v1", xcache(r), r.Body())
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		r = h.do("GET", "/p")
		if xcache(r) == "HIT" && string(r.Body()) == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background refresh did not replace the entry: %q %q", xcache(r), r.Body())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.calls.Load() != 2 {
		t.Fatalf("upstream called %d times, want 2 (one refresh)", h.calls.Load())
	}
}

func TestCacheCollapsesConcurrentMisses(t *testing.T) {
	h := newHarness(t, config.Cache{}, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(200 * time.Millisecond)
		ctx.Response.SetBodyString("slow")
	})
	const n = 20
	results := make(chan string, n)
	for range n {
		go func() {
			r := h.do("GET", "/p")
			results <- xcache(r) + ":" + string(r.Body())
		}()
	}
	counts := map[string]int{}
	for range n {
		counts[<-results]++
	}
	if h.calls.Load() != 1 || counts["MISS:slow"] != 1 || counts["HIT:slow"] != n-1 {
		t.Fatalf("upstream called %d times; results %v", h.calls.Load(), counts)
	}
}

func TestStoreBudgetHolds(t *testing.T) {
	s := NewStore(64 << 10)
	bodyBytes := make([]byte, 10<<10)
	for i := range 200 {
		s.Put(&Entry{Key: fmt.Sprint("k", i), Path: "/p", Body: bodyBytes})
		if s.Bytes() > 64<<10 {
			t.Fatalf("after %d puts the store holds %d bytes, over its 64KiB budget", i+1, s.Bytes())
		}
	}
	if s.Len() < 5 || s.Evictions() == 0 {
		t.Fatalf("len %d evictions %d", s.Len(), s.Evictions())
	}
	// SIEVE keeps an entry that is being hit through a scan of one-off keys.
	s.Put(&Entry{Key: "hot", Path: "/hot", Body: bodyBytes})
	for i := range 100 {
		if s.Get(s.Hash([]byte("hot")), []byte("hot")) == nil {
			t.Fatalf("hot entry evicted after %d one-off puts", i)
		}
		s.Put(&Entry{Key: fmt.Sprint("scan", i), Path: "/scan", Body: bodyBytes})
	}
	if n := s.Purge("/scan"); n == 0 || s.Get(s.Hash([]byte("hot")), []byte("hot")) == nil {
		t.Fatalf("purge by prefix removed %d and took hot with it", n)
	}
	s.Purge("")
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Fatalf("after purging everything: %d entries, %d bytes", s.Len(), s.Bytes())
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := &Entry{Key: "h\x00/p\x00a=1", Path: "/p", Status: 200, Header: []KV{{[]byte("Content-Type"), []byte("text/plain")}},
		Body: []byte("hello"), StoredAt: 1, InitialAge: 2, FreshUntil: 3, StaleUntil: 4, ErrorUntil: 6, KeepUntil: 7, ETag: []byte(`"x"`), LastMod: 5, VaryNames: []string{"Accept"}}
	raw, _ := e.MarshalBinary()
	var got Entry
	if err := got.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Key, got.Path, got.Status, got.Header, string(got.Body), got.StoredAt, got.InitialAge, got.FreshUntil, got.StaleUntil, got.ErrorUntil, got.KeepUntil, string(got.ETag), got.LastMod, got.VaryNames) !=
		fmt.Sprint(e.Key, e.Path, e.Status, e.Header, string(e.Body), e.StoredAt, e.InitialAge, e.FreshUntil, e.StaleUntil, e.ErrorUntil, e.KeepUntil, string(e.ETag), e.LastMod, e.VaryNames) {
		t.Fatalf("round trip changed the entry: %q %q", got.Key, got.Body)
	}
	for i := range raw {
		if err := (&Entry{}).UnmarshalBinary(raw[:i]); err == nil {
			t.Fatalf("an entry truncated to %d of %d bytes decoded without error", i, len(raw))
		}
	}
	if err := (&Entry{}).UnmarshalBinary(append(raw, 0)); err == nil {
		t.Fatal("an entry with a trailing byte decoded without error")
	}
}

// hitExchange prepares a request that the cache answers from memory.
func hitExchange(b testing.TB, h *harness) (*proxy.Exchange, func()) {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI("/api/products?page=2&sort=name")
	ctx.Request.Header.SetHost("shop.example")
	ctx.Request.Header.Set("Accept-Encoding", "gzip")
	x := &proxy.Exchange{Ctx: ctx, Route: &proxy.Route{Name: "r", Timeout: time.Second}, Method: methodGet,
		Path: []byte("/api/products"), Query: []byte("sort=name&page=2")}
	h.h.Serve(x)
	return x, func() {
		ctx.Response.Reset()
		h.h.Serve(x)
	}
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	h := newHarness(t, config.Cache{Vary: []string{"Accept-Encoding"}}, body(strings.Repeat("x", 2048), "Content-Type", "application/json", "ETag", `"e"`))
	_, serve := hitExchange(t, h)
	serve()
	if n := testing.AllocsPerRun(1000, serve); n != 0 {
		t.Fatalf("a cache hit allocates %.1f times", n)
	}
	if h.calls.Load() != 1 {
		t.Fatalf("upstream called %d times", h.calls.Load())
	}
}

func BenchmarkCacheHit(b *testing.B) {
	h := newHarness(b, config.Cache{Vary: []string{"Accept-Encoding"}}, body(strings.Repeat("x", 2048), "Content-Type", "application/json", "ETag", `"e"`))
	_, serve := hitExchange(b, h)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		serve()
	}
}
