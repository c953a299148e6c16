package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// originServer is a net/http upstream: unlike fasthttp it lets a handler send its own Date.
type originServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func startOrigin(t *testing.T, h http.HandlerFunc) *originServer {
	t.Helper()
	o := &originServer{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Clone(r.Context()))
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *originServer) requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.seen...)
}

func (o *originServer) addr() string { return strings.TrimPrefix(o.URL, "http://") }

func xc(r response) string { return r.Headers.Get("X-Cache") }

// The cache defects a poisoning attempt or an HTTP cache test suite finds from outside, each
// over real sockets between a client, the gateway and an upstream.
func TestCacheCorrectnessE2E(t *testing.T) {
	origDate := time.Now().Add(-100 * time.Second).UTC().Format(http.TimeFormat)
	origin := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 64)
		n, _ := r.Body.Read(body)
		switch {
		case r.URL.Path == "/orders" && r.Method == http.MethodPost:
			w.Header().Set("Location", "/inv")
			w.WriteHeader(http.StatusCreated)
			return
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.WriteHeader(http.StatusNoContent)
			return
		case r.URL.Path == "/rv" && r.Header.Get("If-None-Match") == `"v1"`:
			w.Header().Set("Cache-Control", "max-age=3600")
			w.WriteHeader(http.StatusNotModified)
			return
		case r.URL.Path == "/rv":
			w.Header().Set("ETag", `"v1"`)
		}
		w.Header().Set("Date", origDate)
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "%s host=%s proto=%s body=%s", r.URL.Path, r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), body[:n])
	})
	gw, _ := startPolicyGateway(t, fmt.Sprintf(`
server: {trusted_proxies: [127.0.0.1/32]}
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {site: {targets: ["%s"]}}
routes:
  - {name: site, match: {path_prefix: /}, upstream: site, cache: {ttl: 60s}}
`, origin.addr()))

	t.Run("a GET with a body is not stored", func(t *testing.T) {
		r := rawRequest(t, gw.Addr, "GET /c HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil")
		if xc(r) != "BYPASS" || !strings.Contains(r.Body, "body=evil") {
			t.Fatalf("fat GET: %q %q", xc(r), r.Body)
		}
		r = get(t, gw.URL+"/c", "Host", "shop.example")
		if xc(r) != "MISS" || strings.Contains(r.Body, "evil") {
			t.Fatalf("clean GET after a fat one: %q %q", xc(r), r.Body)
		}
	})
	t.Run("forwarded host from a trusted peer is keyed", func(t *testing.T) {
		r := get(t, gw.URL+"/f", "Host", "shop.example", "X-Forwarded-Host", "evil.example")
		if !strings.Contains(r.Body, "host=evil.example") {
			t.Fatalf("the trusted peer's X-Forwarded-Host was not forwarded: %q", r.Body)
		}
		r = get(t, gw.URL+"/f", "Host", "shop.example")
		if xc(r) != "MISS" || strings.Contains(r.Body, "evil") {
			t.Fatalf("clean GET got the poisoned entry: %q %q", xc(r), r.Body)
		}
		r = get(t, gw.URL+"/f", "Host", "shop.example", "X-Forwarded-Proto", "https")
		if xc(r) != "MISS" || !strings.Contains(r.Body, "proto=https") {
			t.Fatalf("X-Forwarded-Proto https shares the http entry: %q %q", xc(r), r.Body)
		}
	})
	t.Run("a hit keeps the stored Date and adds Age", func(t *testing.T) {
		get(t, gw.URL+"/d")
		r := get(t, gw.URL+"/d")
		if xc(r) != "HIT" || r.Headers.Get("Date") != origDate || len(r.Headers.Values("Date")) != 1 || r.Headers.Get("Age") == "" {
			t.Fatalf("hit: X-Cache %q Date %q (upstream's %q) Age %q", xc(r), r.Headers.Values("Date"), origDate, r.Headers.Get("Age"))
		}
	})
	t.Run("unsafe methods invalidate", func(t *testing.T) {
		get(t, gw.URL+"/inv")
		if r := get(t, gw.URL+"/inv"); xc(r) != "HIT" {
			t.Fatalf("not stored: %q", xc(r))
		}
		expectStatus(t, do(t, http.MethodPut, gw.URL+"/inv", strings.NewReader("x")), 204)
		if r := get(t, gw.URL+"/inv"); xc(r) != "MISS" {
			t.Fatalf("GET after PUT: %q, want MISS", xc(r))
		}
		get(t, gw.URL+"/inv")
		// A POST elsewhere whose Location names the entry removes it too.
		expectStatus(t, do(t, http.MethodPost, gw.URL+"/orders", strings.NewReader("x")), 201)
		if r := get(t, gw.URL+"/inv"); xc(r) != "MISS" {
			t.Fatalf("GET after a POST with Location: %q, want MISS", xc(r))
		}
	})
	t.Run("revalidation sends the validator and a 304 freshens", func(t *testing.T) {
		get(t, gw.URL+"/rv")
		r := get(t, gw.URL+"/rv", "Cache-Control", "no-cache")
		if r.Status != 200 || xc(r) != "REVALIDATED" || !strings.HasPrefix(r.Body, "/rv ") {
			t.Fatalf("revalidation: %d %q %q", r.Status, xc(r), r.Body)
		}
		reqs := origin.requests()
		if last := reqs[len(reqs)-1]; last.Header.Get("If-None-Match") != `"v1"` {
			t.Fatalf("the upstream got If-None-Match %q, want the stored ETag", last.Header.Get("If-None-Match"))
		}
	})
}

// When the upstream is gone, stale-if-error serves the stored response instead of a 502.
func TestCacheStaleIfErrorE2E(t *testing.T) {
	origin := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		fmt.Fprint(w, "stored")
	})
	gw, _ := startPolicyGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {site: {targets: ["%s"]}}
routes:
  - {name: site, match: {path_prefix: /}, upstream: site, cache: {ttl: 60s}}
  - {name: plain, match: {path_prefix: /plain}, upstream: site, cache: {ttl: 60s, stale_if_error: 0s}}
`, origin.addr()))
	if r := get(t, gw.URL+"/p"); xc(r) != "MISS" {
		t.Fatalf("first: %q", xc(r))
	}
	origin.Close()                      // connections refused from now on
	time.Sleep(1100 * time.Millisecond) // max-age=1 ends
	r := get(t, gw.URL+"/p")
	if r.Status != 200 || r.Body != "stored" || xc(r) != "STALE" {
		t.Fatalf("upstream down: %d %q %q, want the stored response", r.Status, xc(r), r.Body)
	}
	if r := get(t, gw.URL+"/other"); r.Status != 502 {
		t.Fatalf("nothing stored: %d, want 502", r.Status)
	}
}

// With store: redis, an unsafe request removes the resource from the shared tier too, so the
// gateway that served it does not fetch the old response back from Redis.
func TestCacheRedisInvalidationE2E(t *testing.T) {
	srv := testenv.StartRedis(t)
	var mu sync.Mutex
	version := 1
	origin := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut {
			version++
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "v%d", version)
	})
	cfg := fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
redis: {addrs: ["%s"], timeout: 2s}
upstreams: {site: {targets: ["%s"]}}
routes:
  - {name: site, match: {path_prefix: /}, upstream: site, cache: {store: redis}}
`, srv.Addr, origin.addr())
	a, _ := startPolicyGateway(t, cfg)
	b, _ := startPolicyGateway(t, cfg)
	get(t, a.URL+"/p", "Host", "shop.example")
	if r := get(t, b.URL+"/p", "Host", "shop.example"); xc(r) != "HIT" || r.Body != "v1" {
		t.Fatalf("b before: %q %q", xc(r), r.Body)
	}
	expectStatus(t, do(t, http.MethodPut, b.URL+"/p", strings.NewReader("x"), "Host", "shop.example"), 204)
	if r := get(t, b.URL+"/p", "Host", "shop.example"); xc(r) != "MISS" || r.Body != "v2" {
		t.Fatalf("b after PUT: %q %q, want MISS v2", xc(r), r.Body)
	}
}
