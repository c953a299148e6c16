package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/archway-gateway/archway/gateway/admin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// TestSplitCanaryOverRealSockets: a canary release at 95/5. 10 000 requests over real sockets
// land within ±1 % of the weights (exactly on them: the split counts, it does not draw lots);
// a header sends a tester to the canary outright; a session cookie keeps a client on one
// upstream; /routes shows the split and the metrics count what each upstream got.
func TestSplitCanaryOverRealSockets(t *testing.T) {
	stable := startUpstream(t, "stable", nil)
	canary := startUpstream(t, "canary", nil)
	p, opt := withPolicies(t)
	reg := prometheus.NewRegistry()
	if err := reg.Register(p.Splits); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  products: {targets: ["%s"]}
  products-canary: {targets: ["%s"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    upstream: products
    split:
      sticky: cookie:session
      upstreams:
        - {upstream: products, weight: 95}
        - {upstream: products-canary, weight: 5, match: {header: X-Canary, value: always}}
`, stable.Addr, canary.Addr), opt)

	client := &fasthttp.HostClient{Addr: gw.Addr, MaxConns: 8}
	const total = 10000
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := w; i < total; i += 4 {
				req.SetRequestURI(fmt.Sprintf("http://%s/api/products/%d", gw.Addr, i))
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					errs <- fmt.Errorf("request %d: %v %d", i, err, resp.StatusCode())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, c := stable.count(), canary.count()
	if s+c != total {
		t.Fatalf("upstreams got %d + %d requests, sent %d", s, c, total)
	}
	if share := float64(c) * 100 / total; share < 4 || share > 6 {
		t.Fatalf("canary got %.2f %% of %d requests (%d), weight 5 %%", share, total, c)
	}
	t.Logf("10 000 requests at 95/5: stable %d, canary %d", s, c)

	// A tester asks for the canary outright.
	for range 10 {
		r := get(t, gw.URL+"/api/products/1", "X-Canary", "always")
		expectStatus(t, r, 200)
		if r.Body != "canary /api/products/1" {
			t.Fatalf("X-Canary: always answered by %q", r.Body)
		}
	}
	// A session stays on one upstream.
	for i := range 20 {
		cookie := fmt.Sprintf("session=user-%d", i)
		first := get(t, gw.URL+"/api/products/1", "Cookie", cookie).Body
		for range 3 {
			if got := get(t, gw.URL+"/api/products/1", "Cookie", cookie).Body; got != first {
				t.Fatalf("%s moved from %q to %q", cookie, first, got)
			}
		}
	}

	// The metrics count exactly what each upstream received.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "archway_split_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == "products" {
				counted[labels["upstream"]] = m.GetCounter().GetValue()
			}
		}
	}
	if counted["products"] != float64(stable.count()) || counted["products-canary"] != float64(canary.count()) {
		t.Errorf("archway_split_requests_total %v; upstreams received stable %d, canary %d", counted, stable.count(), canary.count())
	}

	// /routes shows the split.
	adm := httptest.NewServer(admin.Handler(gw.Gateway, reg, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer adm.Close()
	r := get(t, adm.URL+"/routes")
	expectStatus(t, r, 200)
	var routes []struct {
		Name  string
		Split *struct {
			Sticky    string
			Upstreams []struct {
				Upstream string
				Weight   int
				Match    string
			}
		}
	}
	if err := json.Unmarshal([]byte(r.Body), &routes); err != nil || len(routes) != 1 || routes[0].Split == nil {
		t.Fatalf("/routes: %s", r.Body)
	}
	sp := routes[0].Split
	if sp.Sticky != "cookie:session" || len(sp.Upstreams) != 2 || sp.Upstreams[1].Upstream != "products-canary" ||
		sp.Upstreams[1].Weight != 5 || sp.Upstreams[1].Match != "header X-Canary: always" {
		t.Errorf("/routes split: %s", r.Body)
	}
}

// TestSplitWithCacheKeepsEachUpstreamsAnswers: a cached route with a canary. The split runs
// before the cache and the cache keys by the chosen upstream, so a tester's canary answer is
// never served from cache to a client the split sends to the stable version, and the reverse.
func TestSplitWithCacheKeepsEachUpstreamsAnswers(t *testing.T) {
	answer := func(body string) func(ctx *fasthttp.RequestCtx) {
		return func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Cache-Control", "public, max-age=60")
			ctx.SetBodyString(body)
		}
	}
	stable := startUpstream(t, "stable", answer("stable"))
	canary := startUpstream(t, "canary", answer("canary"))
	_, opt := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  products: {targets: ["%s"]}
  products-canary: {targets: ["%s"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    upstream: products
    cache: {ttl: 60s}
    split:
      upstreams:
        - {upstream: products, weight: 100}
        - {upstream: products-canary, weight: 0, match: {header: X-Canary, value: always}}
`, stable.Addr, canary.Addr), opt)

	get := func(canaryTester bool) (string, string) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + gw.Addr + "/api/products/1")
		if canaryTester {
			req.Header.Set("X-Canary", "always")
		}
		if err := fasthttp.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("GET: %v %d", err, resp.StatusCode())
		}
		return string(resp.Body()), string(resp.Header.Peek("X-Cache"))
	}
	if body, _ := get(true); body != "canary" {
		t.Fatalf("tester got %q, want canary", body)
	}
	if body, _ := get(true); body != "canary" {
		t.Fatalf("tester again got %q, want canary", body)
	}
	if body, cache := get(false); body != "stable" {
		t.Fatalf("a stable client got %q (X-Cache %s): the canary's cached answer leaked", body, cache)
	}
	if body, cache := get(false); body != "stable" || cache != "HIT" {
		t.Fatalf("a stable client again got %q (X-Cache %s), want the stable answer from cache", body, cache)
	}
}
