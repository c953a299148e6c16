package server_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/admin"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/policies"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

func startPolicyGateway(t *testing.T, yaml string) (*gateway, *policies.Policies) {
	t.Helper()
	p, opt := withPolicies(t) // cleanups run last-first: the table closes after the gateway's shutdown
	gw := startGateway(t, yaml, opt)
	return gw, p
}

func TestRateLimitLocalE2E(t *testing.T) {
	up := startUpstream(t, "api", nil)
	gw, p := startPolicyGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams: {api: {targets: ["%s"]}}
routes:
  - {name: api, match: {path_prefix: /}, upstream: api, rate_limit: {rate: 1/m, burst: 3}}
`, up.Addr))
	for i := 2; i >= 0; i-- {
		r := get(t, gw.URL+"/x")
		expectStatus(t, r, 200)
		if r.Headers.Get("RateLimit-Limit") != "3" || r.Headers.Get("RateLimit-Remaining") != strconv.Itoa(i) || r.Headers.Get("RateLimit-Reset") == "" {
			t.Fatalf("headers %v", r.Headers)
		}
	}
	r := get(t, gw.URL+"/x")
	expectStatus(t, r, 429)
	if r.Headers.Get("Retry-After") == "" || r.Headers.Get("RateLimit-Remaining") != "0" || r.Headers.Get("Content-Type") != "application/json" {
		t.Fatalf("429 headers %v", r.Headers)
	}
	if up.count() != 3 {
		t.Fatalf("upstream saw %d requests, want 3", up.count())
	}
	// A reload that keeps the route keeps its buckets.
	if _, err := gw.Apply(mustParse(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams: {api: {targets: ["%s"]}}
routes:
  - {name: api, match: {path_prefix: /}, upstream: api, timeout: 5s, rate_limit: {rate: 1/m, burst: 3}}
`, up.Addr)), "test"); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, get(t, gw.URL+"/x"), 429)
	if l := p.Limits.Local("api"); l == nil || l.Keys() != 1 {
		t.Fatalf("local buckets after reload: %v", l)
	}
}

func TestRateLimitHeaderKeyE2E(t *testing.T) {
	up := startUpstream(t, "api", nil)
	gw, _ := startPolicyGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams: {api: {targets: ["%s"]}}
routes:
  - {name: api, match: {path_prefix: /}, upstream: api, rate_limit: {rate: 1/m, burst: 1, key: "header:X-Api-Key"}}
`, up.Addr))
	expectStatus(t, get(t, gw.URL+"/", "X-Api-Key", "a"), 200)
	expectStatus(t, get(t, gw.URL+"/", "X-Api-Key", "a"), 429)
	expectStatus(t, get(t, gw.URL+"/", "X-Api-Key", "b"), 200)
	expectStatus(t, get(t, gw.URL+"/"), 200) // no key: the client address's bucket
	expectStatus(t, get(t, gw.URL+"/"), 429)
}

// With Redis killed, on_store_error: allow keeps answering from the local bucket and deny
// answers 503; no request hangs, and once the breaker is open (after breaker_failures failed
// calls) requests no longer try Redis at all. After Redis restarts the shared bucket is used
// again. What is held is behaviour, counted by the store, not wall-clock time: the latencies are
// logged, and only a hang (seconds) fails on time.
func TestRateLimitRedisOutageE2E(t *testing.T) {
	srv := testenv.StartRedis(t)
	up := startUpstream(t, "api", nil)
	gw, p := startPolicyGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
redis: {addrs: ["%s"], timeout: 50ms, breaker_probe: 100ms}
upstreams: {api: {targets: ["%s"]}}
routes:
  - {name: allow, match: {path_prefix: /allow}, upstream: api, rate_limit: {rate: 100/s, burst: 100, scope: redis}}
  - {name: deny, match: {path_prefix: /deny}, upstream: api, rate_limit: {rate: 100/s, burst: 100, scope: redis, on_store_error: deny}}
`, srv.Addr, up.Addr))
	expectStatus(t, get(t, gw.URL+"/allow"), 200)
	expectStatus(t, get(t, gw.URL+"/deny"), 200)

	store := p.Redis.Live()
	skippedBefore := store.Skipped.Load()
	srv.Kill()
	const requests = 20
	var worst, afterBreaker time.Duration
	for i := range requests {
		start := time.Now()
		expectStatus(t, get(t, gw.URL+"/allow"), 200)
		d := time.Since(start)
		worst = max(worst, d)
		if i >= config.DefaultRedisBreakerFailures {
			afterBreaker = max(afterBreaker, d)
		}
	}
	start := time.Now()
	r := get(t, gw.URL+"/deny")
	expectStatus(t, r, 503)
	denyTook := time.Since(start)
	t.Logf("Redis down: slowest request %v, slowest once the breaker was open %v, deny answered in %v", worst, afterBreaker, denyTook)
	if worst > 2*time.Second {
		t.Fatalf("a request hung on a dead Redis for %v (store timeout 50ms)", worst)
	}
	// The first breaker_failures requests fail against Redis and open the breaker; every later
	// one, and the deny request, must skip Redis.
	if skipped, want := store.Skipped.Load()-skippedBefore, uint64(requests-config.DefaultRedisBreakerFailures+1); skipped < want {
		t.Fatalf("requests that skipped Redis with the breaker open: %d, want at least %d", skipped, want)
	}
	reg := prometheus.NewRegistry()
	if err := p.Register(reg); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "archway_ratelimit_store_fallbacks_total", "local", "allow"); got < 20 {
		t.Fatalf("fallbacks counted %v, want 20", got)
	}

	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for p.Redis.Live().BreakerOpen() {
		if time.Now().After(deadline) {
			t.Fatal("breaker stayed open after Redis restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	expectStatus(t, get(t, gw.URL+"/deny"), 200)
}

func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i, l := range m.GetLabel() {
				if i < len(labels) && l.GetValue() != labels[i] {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestCacheE2E(t *testing.T) {
	var calls atomic.Int64
	big := make([]byte, 200<<10) // streamed by the upstream transport
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	up := startUpstream(t, "site", func(ctx *fasthttp.RequestCtx) {
		calls.Add(1)
		switch string(ctx.Path()) {
		case "/big":
			ctx.SetBody(big)
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for range 10 {
					_, _ = w.WriteString("chunk-")
					_ = w.Flush()
				}
			})
		default:
			ctx.Response.Header.Set("ETag", `"v1"`)
			ctx.SetBodyString("page " + string(ctx.Path()))
		}
	})
	gw, p := startPolicyGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
admin: {listen: "127.0.0.1:9901", token: "%s"}
upstreams: {site: {targets: ["%s"]}}
routes:
  - {name: site, match: {path_prefix: /}, upstream: site, cache: {ttl: 60s}}
`, adminToken, up.Addr))

	r := get(t, gw.URL+"/a")
	if r.Headers.Get("X-Cache") != "MISS" || r.Body != "page /a" {
		t.Fatalf("first: %v %q", r.Headers, r.Body)
	}
	r = get(t, gw.URL+"/a")
	if r.Headers.Get("X-Cache") != "HIT" || r.Headers.Get("Age") == "" || r.Body != "page /a" || r.Headers.Get("X-Frame-Options") == "" {
		t.Fatalf("second: %v %q", r.Headers, r.Body)
	}
	r = get(t, gw.URL+"/a", "If-None-Match", `"v1"`)
	expectStatus(t, r, 304)
	for _, path := range []string{"/big", "/chunked"} {
		first, second := get(t, gw.URL+path), get(t, gw.URL+path)
		if first.Body != second.Body || second.Headers.Get("X-Cache") != "HIT" || len(first.Body) == 0 {
			t.Fatalf("%s: %q then %q (%d bytes)", path, first.Headers.Get("X-Cache"), second.Headers.Get("X-Cache"), len(second.Body))
		}
	}
	if got := get(t, gw.URL+"/big").Body; got != string(big) {
		t.Fatalf("/big from cache differs: %d bytes", len(got))
	}
	if calls.Load() != 3 {
		t.Fatalf("upstream called %d times, want 3", calls.Load())
	}

	// DELETE /cache by prefix, then everything.
	adm := httptest.NewServer(admin.Handler(gw.Gateway, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), admin.WithCache(p.Caches)))
	t.Cleanup(adm.Close)
	code, out := adminCall(t, http.MethodDelete, adm.URL+"/cache?route=site&prefix=/b", "")
	if code != 200 || out["memory_entries"].(float64) != 1 {
		t.Fatalf("purge /b: %d %v", code, out)
	}
	if get(t, gw.URL+"/big").Headers.Get("X-Cache") != "MISS" || get(t, gw.URL+"/a").Headers.Get("X-Cache") != "HIT" {
		t.Fatal("purge by prefix removed the wrong entries")
	}
	if code, _ := adminCall(t, http.MethodDelete, adm.URL+"/cache?route=nope", ""); code != 404 {
		t.Fatalf("unknown route: %d", code)
	}
	if code, out := adminCall(t, http.MethodDelete, adm.URL+"/cache", ""); code != 200 || out["memory_entries"].(float64) != 3 {
		t.Fatalf("purge all: %d %v", code, out)
	}
	if get(t, gw.URL+"/a").Headers.Get("X-Cache") != "MISS" {
		t.Fatal("entry survived a full purge")
	}
}

// Two gateways with store: redis share entries: what one fetched the other serves.
func TestCacheRedisTierE2E(t *testing.T) {
	srv := testenv.StartRedis(t)
	var calls atomic.Int64
	up := startUpstream(t, "site", func(ctx *fasthttp.RequestCtx) {
		calls.Add(1)
		ctx.SetBodyString("shared")
	})
	cfg := fmt.Sprintf(`
access_log: {enabled: false}
redis: {addrs: ["%s"]}
upstreams: {site: {targets: ["%s"]}}
routes:
  - {name: site, match: {path_prefix: /}, upstream: site, cache: {store: redis}}
`, srv.Addr, up.Addr)
	a, _ := startPolicyGateway(t, cfg)
	b, pb := startPolicyGateway(t, cfg)
	// The host is part of the key: both gateways are asked for the same site.
	if r := get(t, a.URL+"/p", "Host", "shop.example"); r.Headers.Get("X-Cache") != "MISS" {
		t.Fatalf("a: %v", r.Headers)
	}
	if r := get(t, b.URL+"/p", "Host", "shop.example"); r.Headers.Get("X-Cache") != "HIT" || r.Body != "shared" {
		t.Fatalf("b: %v %q", r.Headers, r.Body)
	}
	if calls.Load() != 1 {
		t.Fatalf("upstream called %d times, want 1", calls.Load())
	}
	res, err := pb.Caches.Purge(t.Context(), "", "/p")
	if err != nil || res.Redis != 1 {
		t.Fatalf("purge: %+v %v", res, err)
	}
}

// Two gateway processes sharing one Redis admit the configured rate plus burst within ±5%, not
// twice it.
func TestRateLimitTwoProcessesShareRedis(t *testing.T) {
	srv := testenv.StartRedis(t)
	up := startUpstream(t, "api", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	dir := t.TempDir()
	bin := filepath.Join(dir, "gateway")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.RepoRoot(), "gateway")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const rate, burst, seconds = 100, 20, 3
	var urls []string
	for i := range 2 {
		addr := testenv.FreeAddr(t)
		cfg := filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i))
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
server: {listen: "%s"}
admin: {listen: ""}
access_log: {enabled: false}
redis: {addrs: ["%s"], timeout: 2s}
upstreams: {api: {targets: ["%s"]}}
routes:
  - {name: api, match: {path_prefix: /}, upstream: api, rate_limit: {rate: %d/s, burst: %d, key: route, scope: redis}}
`, addr, srv.Addr, up.Addr, rate, burst)), 0o644); err != nil {
			t.Fatal(err)
		}
		testenv.StartProcess(t, fmt.Sprintf("gateway-%d", i), bin, []string{"-config", cfg, "-log-level", "warn"}, testenv.ProcessOptions{})
		if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "http://"+addr+"/")
	}
	var admitted, limited, lastAdmit atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, u := range urls {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < seconds*time.Second {
					resp, err := client.Get(u)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						admitted.Add(1)
						now := int64(time.Since(start))
						for prev := lastAdmit.Load(); now > prev && !lastAdmit.CompareAndSwap(prev, now); prev = lastAdmit.Load() {
						}
					case 429:
						limited.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	// The window ends at the last admitted answer: requests still in flight at the deadline on a
	// loaded machine would otherwise stretch it with time in which nothing could be admitted.
	elapsed := time.Duration(lastAdmit.Load()).Seconds()
	want := burst + rate*elapsed
	got := float64(admitted.Load())
	t.Logf("two gateway processes admitted %.0f (limited %d) in %.2fs; rate plus burst is %.0f: %+.1f%%", got, limited.Load(), elapsed, want, 100*(got-want)/want)
	if got < want*0.95 || got > want*1.05 {
		t.Fatalf("admitted %.0f, want %.0f ±5%%", got, want)
	}

	// (The Redis timeout is 2s here, not the default 50ms, so that a loaded test machine cannot
	// turn slow answers into local fallbacks and look like inaccuracy: at 250ms, three race
	// suites at once on two cores still timed out and admitted 23 % too many.)

	// Redis dies: both processes fall back to their local buckets and no request hangs. (The
	// breaker's skipping of a hung Redis is shown with SIGSTOP in gateway/ratelimit.)
	srv.Kill()
	time.Sleep(1100 * time.Millisecond) // let the local buckets (idle until now) refill
	var worst, settled time.Duration
	ok := 0
	for i := range 40 {
		start := time.Now()
		resp, err := client.Get(urls[i%2])
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		worst = max(worst, d)
		if i >= 10 {
			settled = max(settled, d)
		}
		if resp.StatusCode == 200 {
			ok++
		}
	}
	t.Logf("Redis killed: %d/40 admitted by local fallback; slowest request %v, slowest after the breakers opened %v", ok, worst, settled)
	if ok < 20 || worst > 3*time.Second || settled > 500*time.Millisecond { // worst: at most about one Redis timeout (2s), never a hang
		t.Fatalf("outage: %d admitted, worst %v, settled %v", ok, worst, settled)
	}
}
