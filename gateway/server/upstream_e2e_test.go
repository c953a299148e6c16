package server_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func twoTargetConfig(balance string, a, b string, extra string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  app:
    balance: %s
    targets: ["%s", "%s"]
    max_fails: 3
    fail_timeout: 1s
    connect_timeout: 500ms
%s
routes:
  - name: app
    match: {path_prefix: /}
    upstream: app
    timeout: 2s
`, balance, a, b, extra)
}

// TestLeastConnPrefersTheFastTarget: with one target slow, least_conn sends most requests to the
// fast one, because the slow one keeps requests in flight longer.
func TestLeastConnPrefersTheFastTarget(t *testing.T) {
	fast := startUpstream(t, "fast", func(ctx *fasthttp.RequestCtx) { ctx.WriteString("fast") })
	slow := startUpstream(t, "slow", func(ctx *fasthttp.RequestCtx) {
		time.Sleep(50 * time.Millisecond)
		ctx.WriteString("slow")
	})
	gw := startGateway(t, twoTargetConfig("least_conn", fast.Addr, slow.Addr, ""))
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				r := get(t, gw.URL+"/")
				mu.Lock()
				counts[r.Body]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if counts["fast"]+counts["slow"] != 200 {
		t.Fatalf("counts %v", counts)
	}
	// Round robin (below) splits 1:1 whatever the speeds; least_conn must clearly favour the
	// fast target. (On an idle machine it is about 6:1; under heavy load fewer requests overlap.)
	if counts["fast"] < 2*counts["slow"] {
		t.Fatalf("least_conn sent fast %d, slow %d: want the fast target to get most requests", counts["fast"], counts["slow"])
	}
	// round_robin, for contrast, splits evenly regardless of speed: the test can tell them apart.
	rr := startGateway(t, twoTargetConfig("round_robin", fast.Addr, slow.Addr, ""))
	rrCounts := map[string]int{}
	for range 20 {
		rrCounts[get(t, rr.URL+"/").Body]++
	}
	if rrCounts["fast"] != 10 || rrCounts["slow"] != 10 {
		t.Fatalf("round_robin counts %v, want 10/10", rrCounts)
	}
}

// TestPassiveEjectionAndReturn: a dead target is ejected after max_fails and gets no traffic;
// after fail_timeout it is tried again and, once it is back, receives traffic again.
func TestPassiveEjectionAndReturn(t *testing.T) {
	good := startUpstream(t, "good", nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := ln.Addr().String()
	ln.Close()
	gw := startGateway(t, twoTargetConfig("round_robin", good.Addr, deadAddr, ""))

	failures := 0
	for range 20 {
		r := get(t, gw.URL+"/x")
		if r.Status == 502 {
			failures++
		} else {
			expectStatus(t, r, 200)
		}
	}
	// The refused attempts go to the good target (failover of unsent requests, even with
	// retries: 0), and still count toward max_fails: the dead target is ejected after 3.
	if failures != 0 {
		t.Fatalf("%d requests failed; a refused connection must fail over to the good target", failures)
	}
	ups := gw.Snapshot().Upstreams["app"].Targets()
	if st := ups[1].Stats(); st.Ejections != 1 {
		t.Fatalf("dead target stats %+v, want one ejection", st)
	}

	// Bring the target back on the same address, wait out fail_timeout: traffic returns.
	revived := startUpstreamAt(t, "revived", deadAddr)
	time.Sleep(1100 * time.Millisecond)
	seen := map[string]int{}
	for range 10 {
		r := get(t, gw.URL+"/x")
		expectStatus(t, r, 200)
		seen[strings.Fields(r.Body)[0]]++
	}
	if seen["revived"] == 0 {
		t.Fatalf("the recovered target got no traffic after fail_timeout: %v", seen)
	}
	_ = revived
}

func startUpstreamAt(t *testing.T, name, addr string) *upstreamServer {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	u := &upstreamServer{Addr: addr, Name: name}
	u.srv = &fasthttp.Server{Handler: u.serve, Logger: quietLogger{}}
	go func() { _ = u.srv.Serve(countingListener{ln, &u.accepted}) }()
	t.Cleanup(func() { _ = u.srv.Shutdown() })
	return u
}

func TestUpstreamFailureStatuses(t *testing.T) {
	slow := startUpstream(t, "slow", func(ctx *fasthttp.RequestCtx) {
		time.Sleep(3 * time.Second)
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  slow: {targets: ["%s"]}
  refused: {targets: ["%s"], max_fails: 1, fail_timeout: 10s}
routes:
  - {name: slow, match: {path_prefix: /slow}, upstream: slow, timeout: 200ms}
  - {name: refused, match: {path_prefix: /refused}, upstream: refused}
`, slow.Addr, refused))
	start := time.Now()
	r := get(t, gw.URL+"/slow")
	if r.Status != 504 || time.Since(start) > 2*time.Second {
		t.Fatalf("slow upstream: %d after %v, want 504 after the 200ms route timeout", r.Status, time.Since(start))
	}
	if r := get(t, gw.URL+"/refused"); r.Status != 502 || !strings.Contains(r.Body, "upstream error") || strings.Contains(r.Body, refused) {
		t.Fatalf("refused connection: %d %q, want 502 without the internal address", r.Status, r.Body)
	}
	if r := get(t, gw.URL+"/refused"); r.Status != 503 || !strings.Contains(r.Body, "no upstream target available") {
		t.Fatalf("all targets ejected: %d %q, want 503", r.Status, r.Body)
	}
}

// TestBodiesStreamBothWaysWithinLimits: a 40 MiB upload and a 40 MiB download pass intact
// without the gateway holding them in memory; a chunked upload over the limit gets 413.
func TestBodiesStreamBothWaysWithinLimits(t *testing.T) {
	const size = 40 << 20
	tooBig := make(chan upstreamRead, 1)
	download := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	up := startUpstream(t, "up", func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/download" {
			ctx.Response.SetBodyRaw(download) // no copy: the heap check measures the gateway
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, ctx.RequestBodyStream())
		if string(ctx.Path()) == "/too-big" {
			tooBig <- upstreamRead{n, err}
		}
		if err != nil {
			ctx.SetStatusCode(500)
			return
		}
		fmt.Fprintf(ctx, "%d %x", n, h.Sum(nil))
	})
	gw := startGateway(t, fmt.Sprintf(`
server: {max_body_bytes: 50MiB}
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {app: {targets: ["%s"]}}
routes: [{name: app, match: {path_prefix: /}, upstream: app}]
`, up.Addr))

	upload := bytes.Repeat([]byte("upload-"), size/7)
	want := fmt.Sprintf("%d %x", len(upload), sha256.Sum256(upload))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := newHeapWatcher()

	// Declared length.
	r := do(t, "POST", gw.URL+"/upload", bytes.NewReader(upload))
	if r.Status != 200 || r.Body != want {
		t.Fatalf("declared upload: %d %q, want %q", r.Status, r.Body, want)
	}
	// Chunked (unknown length): io.MultiReader hides the length from net/http.
	r = do(t, "POST", gw.URL+"/upload", io.MultiReader(bytes.NewReader(upload)))
	if r.Status != 200 || r.Body != want {
		t.Fatalf("chunked upload: %d %q, want %q", r.Status, r.Body, want)
	}
	resp, err := client.Get(gw.URL + "/download")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, resp.Body)
	resp.Body.Close()
	if sum := sha256.Sum256(download); n != int64(len(download)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("download: %d bytes, want %d with the same digest", n, len(download))
	}
	growth := peak.stop() - before.HeapAlloc
	t.Logf("peak heap growth while streaming: %.1f MiB", float64(growth)/(1<<20))
	// The test's own 40 MiB buffers exist before the measurement starts; the gateway and the
	// test upstream must not add another copy of either body.
	if int64(growth) > 8<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 40 MiB bodies: something buffered a whole body", growth>>20)
	}

	// Chunked over the limit: one byte more than the 50 MiB limit, in one chunk whose end never
	// comes. The client sends all of it and only then reads, so the gateway has read every byte
	// it was sent when it answers: no reset can hide the answer.
	const limit = 50 << 20
	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	sent := make(chan error, 1)
	go func() {
		_, err := fmt.Fprintf(c, "POST /too-big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", limit+1)
		for left := limit + 1; err == nil && left > 0; {
			chunk := upload[:min(left, len(upload))]
			_, err = c.Write(chunk)
			left -= len(chunk)
		}
		sent <- err
	}()
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("chunked upload over the limit: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := <-sent; err != nil {
		t.Fatalf("sending the oversized body: %v", err)
	}
	if resp.StatusCode != 413 || strings.Contains(string(body), "127.0.0.1") || !strings.Contains(string(body), `"request body too large"`) {
		t.Fatalf("chunked upload over the limit: %d %q, want 413 with the fixed message only", resp.StatusCode, body)
	}
	// What reached the upstream: at most the limit, and a body that broke off rather than one
	// that ended cleanly, so the upstream cannot take a truncated upload for a whole one.
	select {
	case got := <-tooBig:
		if got.n > limit || got.err == nil {
			t.Fatalf("the upstream read %d bytes ending in %v, want at most %d and a broken body", got.n, got.err, limit)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream never saw the oversized request end")
	}
	if st := gw.Snapshot().Upstreams["app"].Targets()[0].Stats(); st.Failures != 0 {
		t.Fatalf("a client's oversized body counted as an upstream failure: %+v", st)
	}
}

// upstreamRead is how much of a request body an upstream read, and how the read ended.
type upstreamRead struct {
	n   int64
	err error
}

// heapWatcher samples HeapAlloc to find the peak during a test.
type heapWatcher struct {
	mu   sync.Mutex
	peak uint64
	done chan struct{}
	wg   sync.WaitGroup
}

func newHeapWatcher() *heapWatcher {
	w := &heapWatcher{done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var m runtime.MemStats
		for {
			select {
			case <-w.done:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&m)
				w.mu.Lock()
				w.peak = max(w.peak, m.HeapAlloc)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *heapWatcher) stop() uint64 {
	close(w.done)
	w.wg.Wait()
	return w.peak
}
