//go:build !race

package server

import (
	"testing"
	"time"
)

// TestWriteAndWaitRequestAllocatesNothing: with server.write_and_wait on (with and without
// parking), a proxied request on a keep-alive connection, its answer held and written by the
// wait for the next one, allocates nothing, over a real socket.
func TestWriteAndWaitRequestAllocatesNothing(t *testing.T) {
	for _, server := range []string{"{write_and_wait: 20ms}", "{write_and_wait: 20ms, idle_park_after: 10s, idle_timeout: 60s}"} {
		t.Run(server, func(t *testing.T) {
			g := newAllocGateway(t, `
server: `+server+`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - {name: products, match: {path_prefix: /api/products}, strip_prefix: /api, upstream: products}
`, nil)
			if g.listeners[0].writeWait != 20*time.Millisecond {
				t.Fatalf("write_and_wait is %v on the listener", g.listeners[0].writeWait)
			}
			roundTrip, checkAnswer := socketRoundTrip(t, g)
			for range 5000 {
				roundTrip()
			}
			checkAnswer()
			if allocs := testing.AllocsPerRun(2000, roundTrip); allocs != 0 {
				t.Fatalf("a request with write_and_wait allocates %.2f times, want 0", allocs)
			}
		})
	}
}
