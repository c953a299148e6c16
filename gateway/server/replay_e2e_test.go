package server_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// A failed attempt is repeated on another target only when the body can be sent again: a small
// body read whole is; one over 64 KiB or chunked streamed from the client and is gone. Every
// request of the second kind reaches exactly one target, whatever it answered.
func TestNoRetryOfBodiesThatCannotBeReplayed(t *testing.T) {
	bad := startUpstream(t, "bad", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(502) })
	good := startUpstream(t, "good", nil)
	// Outlier detection off: the bad target must stay in rotation for every phase.
	gw := startGateway(t, strings.Replace(twoTargetConfig("round_robin", bad.Addr, good.Addr, "    outlier: {consecutive_5xx: 0}"),
		"    timeout: 2s\n", "    timeout: 2s\n    retries: 1\n", 1))

	const n = 4
	small := bytes.Repeat([]byte("s"), 1<<10)
	for i := range n {
		if r := do(t, "PUT", gw.URL+"/small", bytes.NewReader(small)); r.Status != 200 {
			t.Fatalf("small PUT %d: %d %q; a replayable body must be retried on the good target", i, r.Status, r.Body)
		}
	}
	if bad.count() == 0 {
		t.Fatal("round robin never picked the bad target: the check below would prove nothing")
	}

	large := bytes.Repeat([]byte("l"), 100<<10)
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"over 64 KiB", func() io.Reader { return bytes.NewReader(large) }},
		{"chunked", func() io.Reader { return io.MultiReader(bytes.NewReader(small)) }},
	} {
		before := bad.count() + good.count()
		failed := 0
		for i := range n {
			r := do(t, "PUT", gw.URL+"/large", tc.body())
			switch r.Status {
			case 200:
			case 502:
				failed++
			default:
				t.Fatalf("%s PUT %d: %d %q", tc.name, i, r.Status, r.Body)
			}
		}
		if got := bad.count() + good.count() - before; got != n {
			t.Fatalf("%s: %d requests reached the targets %d times: a body that cannot be replayed was sent twice", tc.name, n, got)
		}
		if failed == 0 {
			t.Fatalf("%s: no request met the bad target first", tc.name)
		}
	}
}

// A client that stops sending its body gets 408 when read_timeout runs out, and a body that
// never completed is never forwarded whole.
func TestSlowClientBodyIs408(t *testing.T) {
	up := startUpstream(t, "up", nil)
	other := startUpstream(t, "other", nil)
	gw := startGateway(t, "server: {read_timeout: 1s}\n"+twoTargetConfig("round_robin", up.Addr, other.Addr, ""))
	for _, tc := range []struct{ name, raw string }{
		{"declared length, read whole", "PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"},
		{"declared length, streamed", fmt.Sprintf("PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n0123456789", 1<<20)},
		{"chunked", "PUT /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawRequest(t, gw.Addr, tc.raw)
			if r.Status != 408 || !r.Closed {
				t.Fatalf("status %d closed %v, want 408 and closed: %s", r.Status, r.Closed, r.Body)
			}
			checkFixedBody(t, r, "request timed out")
		})
	}
	for _, seen := range append(up.requestsSnapshot(), other.requestsSnapshot()...) {
		if seen.BodyLen >= 100 {
			t.Fatalf("the upstream read a %d-byte body the client never finished", seen.BodyLen)
		}
	}
}

// ip_hash hashes the client address: behind a trusted proxy that is the X-Forwarded-For address,
// so clients spread over the targets and each sticks to one; from an untrusted peer the header
// is ignored and every request hashes the peer.
func TestIPHashBehindTrustedProxies(t *testing.T) {
	a := startUpstream(t, "a", nil)
	b := startUpstream(t, "b", nil)
	trusted := startGateway(t, "server: {trusted_proxies: [127.0.0.0/8]}\n"+twoTargetConfig("ip_hash", a.Addr, b.Addr, ""))
	untrusted := startGateway(t, twoTargetConfig("ip_hash", a.Addr, b.Addr, ""))

	targetOf := func(gw *gateway, ip string) string {
		t.Helper()
		r := get(t, gw.URL+"/who", "X-Forwarded-For", ip)
		if r.Status != 200 {
			t.Fatalf("%s: %d %q", ip, r.Status, r.Body)
		}
		return strings.Fields(r.Body)[0]
	}
	seen := map[string]map[string]bool{} // gateway → targets used
	for _, gw := range []*gateway{trusted, untrusted} {
		seen[gw.URL] = map[string]bool{}
		for i := range 32 {
			ip := fmt.Sprintf("203.0.113.%d", i+1)
			first := targetOf(gw, ip)
			if again := targetOf(gw, ip); again != first {
				t.Fatalf("client %s went to %s, then to %s", ip, first, again)
			}
			seen[gw.URL][first] = true
		}
	}
	if len(seen[trusted.URL]) != 2 {
		t.Fatalf("behind a trusted proxy 32 clients all went to %v: ip_hash hashed the proxy, not the client", seen[trusted.URL])
	}
	if len(seen[untrusted.URL]) != 1 {
		t.Fatalf("from an untrusted peer the forged X-Forwarded-For chose the target: %v", seen[untrusted.URL])
	}
}
