//go:build !race

package server

import (
	"io"
	"log/slog"
	"testing"

	"github.com/archway-gateway/archway/gateway/policies"
)

// TestRoutePolicyRequestAllocatesNothing: with the whole policy table, a route that uses none of them allocates nothing (the policies add no handler),
// and neither do an admitted or refused access check, a split request, a redirect, or a path
// the rewrite regex leaves alone.
func TestRoutePolicyRequestAllocatesNothing(t *testing.T) {
	pol := policies.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer pol.Close()
	g := newAllocGateway(t, `
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80"]}
  canary: {targets: ["canary.internal:80"]}
routes:
  - name: plain
    match: {path_prefix: /api/plain}
    upstream: products
  - name: access
    match: {path_prefix: /api/access}
    upstream: products
    access: {allow: [192.0.2.0/24, 0.0.0.0/0], deny: [10.0.0.0/8]}
  - name: office
    match: {path_prefix: /api/office}
    upstream: products
    access: {allow: [10.20.0.0/16]}
  - name: split
    match: {path_prefix: /api/split}
    upstream: products
    split: {sticky: client_ip, upstreams: [{upstream: products, weight: 95}, {upstream: canary, weight: 5}]}
  - name: rewrite
    match: {path_prefix: /api/rewrite}
    upstream: products
    rewrite: {regex: "^/api/rewrite/old/(.*)$", replacement: /new/$1}
  - name: redirect
    match: {path_prefix: /api/moved}
    redirect: {to: "https://example.com$request_uri", status: 301}
`, nil, func(o *Options) { o.Policies = pol })
	const head = " HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n"
	for name, tc := range map[string]struct {
		path string
		want int
	}{
		"off":              {"/api/plain/1", 200},
		"access-admitted":  {"/api/access/1", 200},
		"access-refused":   {"/api/office/1", 403},
		"split":            {"/api/split/1", 200},
		"rewrite-no-match": {"/api/rewrite/current/1", 200},
		"redirect":         {"/api/moved/1?x=1", 301},
	} {
		t.Run(name, func(t *testing.T) {
			d := newRequestDriver("GET " + tc.path + head)
			allocs := d.steadyAllocs(t, g.entry.Handle, tc.want, 2000, 1000)
			if allocs != 0 {
				t.Fatalf("%s: %.2f allocations per request, want 0", name, allocs)
			}
		})
	}
}
