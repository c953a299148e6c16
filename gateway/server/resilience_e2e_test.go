package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
)

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func retryConfig(balance string, targets []string, retries int, extra string) string {
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = `"` + t + `"`
	}
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  app:
    balance: %s
    targets: [%s]
%s
routes:
  - {name: app, match: {path_prefix: /}, upstream: app, retries: %d, timeout: 2s}
`, balance, strings.Join(quoted, ", "), extra, retries)
}

// TestRetriesGoToAnotherTarget: with one target refusing connections, every request, POST
// included (nothing was sent), succeeds on the other target.
func TestRetriesGoToAnotherTarget(t *testing.T) {
	good := startUpstream(t, "good", nil)
	gw := startGateway(t, retryConfig("round_robin", []string{deadAddr(t), good.Addr}, 1, ""))
	for i := range 20 {
		method := "GET"
		if i%2 == 1 {
			method = "POST"
		}
		r := do(t, method, gw.URL+"/x", strings.NewReader("body"))
		if r.Status != 200 || !strings.HasPrefix(r.Body, "good") {
			t.Fatalf("%s %d: %d %q", method, i, r.Status, r.Body)
		}
	}
	// Without retries too: a request that never left goes to the other target (nginx's default
	// proxy_next_upstream error timeout), outside the retry budget; the refusals still count
	// toward max_fails and eject the dead target after 3.
	dead := deadAddr(t)
	noRetry := startGateway(t, retryConfig("round_robin", []string{dead, good.Addr}, 0, ""))
	for i := range 10 {
		if r := get(t, noRetry.URL+"/x"); r.Status != 200 {
			t.Fatalf("without retries, request %d: %d %q", i, r.Status, r.Body)
		}
	}
	for _, tg := range noRetry.Snapshot().Upstreams["app"].Targets() {
		if s := tg.Stats(); tg.Addr == dead && (s.Failures != 3 || s.Ejections != 1) {
			t.Fatalf("dead target: %+v, want 3 failures and an ejection", s)
		}
	}
}

// crashingUpstream reads a whole request, then closes the connection without answering: the
// request reached it and may have been processed.
func crashingUpstream(t *testing.T, received *atomic.Int64) string {
	return testenv.ServeTCP(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err == nil {
			received.Add(1)
			_ = req.Body.Close()
		}
	})
}

// TestRetriesNeverRepeatAPostThatReachedTheUpstream: a POST that reached a target that then
// broke is not repeated elsewhere (it may have taken effect); a GET is.
func TestRetriesNeverRepeatAPostThatReachedTheUpstream(t *testing.T) {
	var crashed atomic.Int64
	crash := crashingUpstream(t, &crashed)
	good := startUpstream(t, "good", nil)
	gw := startGateway(t, retryConfig("round_robin", []string{crash, good.Addr}, 2, "    max_fails: 0"))
	posts := 0
	for range 10 {
		r := do(t, "POST", gw.URL+"/order", strings.NewReader(`{"item":1}`))
		switch {
		case r.Status == 502:
		case r.Status == 200:
			posts++
		default:
			t.Fatalf("POST: %d %q", r.Status, r.Body)
		}
	}
	goodPosts := 0
	for _, req := range good.requestsSnapshot() {
		if req.Method == "POST" {
			goodPosts++
		}
	}
	if int64(goodPosts)+crashed.Load() != 10 || goodPosts != posts {
		t.Fatalf("10 POSTs: crashing target got %d, good target %d (%d answered 200): a POST was sent twice",
			crashed.Load(), goodPosts, posts)
	}
	crashed.Store(0)
	for i := range 10 {
		if r := get(t, gw.URL+"/x"); r.Status != 200 {
			t.Fatalf("GET %d: %d, want a retry on the good target", i, r.Status)
		}
	}
	if crashed.Load() == 0 {
		t.Fatal("round robin never sent a GET to the crashing target; the test proves nothing")
	}
}

// TestRetryBudgetCapsExtraLoad: when every target fails, retries add at most about 20% load.
func TestRetryBudgetCapsExtraLoad(t *testing.T) {
	var attempts atomic.Int64
	failing := func(ctx *fasthttp.RequestCtx) {
		attempts.Add(1)
		ctx.SetStatusCode(503)
	}
	a := startUpstream(t, "a", failing)
	b := startUpstream(t, "b", failing)
	c := startUpstream(t, "c", failing)
	gw := startGateway(t, retryConfig("round_robin", []string{a.Addr, b.Addr, c.Addr}, 2, "    outlier: {consecutive_5xx: 0}"))
	const n = 1000
	for range n {
		if r := get(t, gw.URL+"/x"); r.Status != 503 {
			t.Fatalf("status %d", r.Status)
		}
	}
	extra := attempts.Load() - n
	// 20% of 1000, plus the initial 50 credits' worth (10 retries).
	if extra > n/5+10 {
		t.Fatalf("%d requests caused %d extra attempts, want at most %d", n, extra, n/5+10)
	}
	if extra < n/10 {
		t.Fatalf("only %d retries happened; the budget should allow about %d", extra, n/5)
	}
	t.Logf("%d requests, %d retries (%.1f%%)", n, extra, float64(extra)*100/n)
}

// TestOutlierEjectionOfAFastFailingTarget: under least_conn a target that answers 500 at once
// would attract traffic (it never has anything in flight); outlier detection ejects it.
func TestOutlierEjectionOfAFastFailingTarget(t *testing.T) {
	bad := startUpstream(t, "bad", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500) })
	good := startUpstream(t, "good", func(ctx *fasthttp.RequestCtx) {
		time.Sleep(5 * time.Millisecond)
		ctx.WriteString("good")
	})
	gw := startGateway(t, retryConfig("least_conn", []string{bad.Addr, good.Addr}, 0,
		"    outlier: {consecutive_5xx: 3, ejection_time: 10s}"))
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if get(t, gw.URL+"/x").Status != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failures.Load(); f > 10 {
		t.Fatalf("%d of 200 requests failed: the fast-failing target was not ejected", f)
	}
	target := gw.Snapshot().Upstreams["app"].Targets()[0]
	if target.Health(time.Now().UnixNano()) != upstream.Ejected || target.Stats().Ejections == 0 {
		t.Fatalf("bad target: %v %+v", target.Health(time.Now().UnixNano()), target.Stats())
	}

	// With every target failing, max_ejection_percent (50%) keeps one in rotation.
	bad2 := startUpstream(t, "bad2", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500) })
	gw2 := startGateway(t, retryConfig("round_robin", []string{bad.Addr, bad2.Addr}, 0, "    outlier: {consecutive_5xx: 2}"))
	for range 20 {
		get(t, gw2.URL+"/x")
	}
	ejected := 0
	for _, tg := range gw2.Snapshot().Upstreams["app"].Targets() {
		if tg.Health(time.Now().UnixNano()) == upstream.Ejected {
			ejected++
		}
	}
	if ejected != 1 {
		t.Fatalf("%d of 2 failing targets ejected, want 1 (max_ejection_percent 50)", ejected)
	}
}

// TestActiveHealthChecksTakeATargetOutAndPutItBack.
func TestActiveHealthChecksTakeATargetOutAndPutItBack(t *testing.T) {
	var sick atomic.Bool
	flaky := startUpstream(t, "flaky", func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" && sick.Load() {
			ctx.SetStatusCode(503)
			return
		}
		ctx.WriteString("flaky")
	})
	steady := startUpstream(t, "steady", nil)
	gw := startGateway(t, retryConfig("round_robin", []string{flaky.Addr, steady.Addr}, 0,
		"    health_check: {path: /health, interval: 100ms, timeout: 50ms, healthy: 2, unhealthy: 2}"))
	target := gw.Snapshot().Upstreams["app"].Targets()[0]
	countFlaky := func() int {
		n := 0
		for range 20 {
			if strings.HasPrefix(get(t, gw.URL+"/x").Body, "flaky") {
				n++
			}
		}
		return n
	}
	if n := countFlaky(); n != 10 {
		t.Fatalf("healthy: flaky got %d of 20, want 10", n)
	}
	sick.Store(true)
	waitFor(t, 2*time.Second, func() bool { return target.Health(time.Now().UnixNano()) == upstream.Unhealthy })
	if n := countFlaky(); n != 0 {
		t.Fatalf("unhealthy: flaky got %d of 20, want 0", n)
	}
	sick.Store(false)
	waitFor(t, 2*time.Second, func() bool { return target.Health(time.Now().UnixNano()) == upstream.Healthy })
	if n := countFlaky(); n != 10 {
		t.Fatalf("recovered: flaky got %d of 20, want 10", n)
	}
	if st := target.Stats(); st.ChecksPassed == 0 || st.ChecksFailed < 2 {
		t.Fatalf("check counters %+v", st)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
