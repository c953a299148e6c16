package policies

import (
	"fmt"
	"slices"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
)

// TestAccessForwardAuthRewriteSplitRedirectOrder: the rows of access, forward_auth, rewrite,
// split and redirect take their places among the others: access first, forward auth after JWT,
// rewrite before the rate limit and cache, split last of the middlewares, redirect in place of
// the forwarder.
func TestAccessForwardAuthRewriteSplitRedirectOrder(t *testing.T) {
	p := newTable(t)
	cfg := parse(t, fmt.Sprintf(`
access_log: {enabled: false}
jwt: {secret: %q, algorithms: [HS256]}
upstreams: {api: {targets: ["127.0.0.1:1"]}, canary: {targets: ["127.0.0.1:2"]}}
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: api
    split: {upstreams: [{upstream: api, weight: 95}, {upstream: canary, weight: 5}]}
    cache: {}
    rate_limit: {rate: 10/s}
    rewrite: {regex: "^/api/v1/(.*)$", replacement: /api/v2/$1}
    forward_auth: {url: "http://127.0.0.1:3/verify"}
    auth: {jwt: required}
    cors: {origins: ["*"]}
    access: {allow: [10.0.0.0/8]}
  - name: moved
    match: {path_prefix: /old}
    access: {deny: [192.0.2.0/24]}
    redirect: {to: "/new$uri"}
`, secret))
	want := map[string][]config.PolicyName{
		"api": {config.PolicyAccess, config.PolicyCORS, config.PolicyAuth, config.PolicyForwardAuth, config.PolicyRewrite,
			config.PolicySplit, config.PolicyRateLimit, config.PolicyCache},
		"moved": {config.PolicyAccess, config.PolicyRedirect},
	}
	for _, rc := range cfg.Routes {
		forwarder := &proxy.Forwarder{}
		h, built, err := p.Route(rc, cfg, forwarder)
		if err != nil {
			t.Fatalf("route %s: %v", rc.Name, err)
		}
		if !slices.Equal(built, want[rc.Name]) {
			t.Errorf("route %s built %v, want %v", rc.Name, built, want[rc.Name])
		}
		if h == proxy.Handler(forwarder) {
			t.Errorf("route %s: handler is the bare forwarder", rc.Name)
		}
		asked := rc.Policies()
		slices.Sort(asked)
		slices.Sort(built)
		if !slices.Equal(asked, built) {
			t.Errorf("route %s asked for %v, built %v", rc.Name, asked, built)
		}
	}
}
