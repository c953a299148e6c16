//go:build !race

// Allocation counts are only meaningful without the race detector (see gateway/server).

package proxy

import "testing"

// Rewriting allocates nothing: not for a response without the headers (every response of a
// route with strip_prefix), and not for one with a Location to map, once the exchange's scratch
// buffer and the header's value buffer have grown.
func TestRedirectRewriteAllocatesNothing(t *testing.T) {
	p := NewRedirectPolicy(stripAPI, []byte("/api"), nil)
	for _, tc := range []struct{ name, header, value string }{
		{"no location", "Cache-Control", "no-store"},
		{"relative", "Location", "/orders/23"},
		{"target address", "Location", "http://10.0.0.5:3003/orders/23"},
		{"refresh", "Refresh", "0; url=/orders"},
	} {
		x := redirectExchange("http", tc.header, tc.value)
		h := &x.Ctx.Response.Header
		original := []byte(tc.value)
		key := []byte(tc.header)
		allocs := testing.AllocsPerRun(200, func() {
			h.SetCanonical(key, original)
			p.apply(x)
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per response", tc.name, allocs)
		}
	}
}
