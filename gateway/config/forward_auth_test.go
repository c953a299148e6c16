package config

import (
	"slices"
	"testing"
	"time"
)

func TestForwardAuthValidation(t *testing.T) {
	runPolicyCases(t, []policyCase{
		{"minimal", "    upstream: a\n    forward_auth: {url: \"http://127.0.0.1:8081/auth/verify\"}\n", ""},
		{"full", "    upstream: a\n    forward_auth: {url: \"https://auth.internal/verify\", request_headers: [Authorization], response_headers: [X-User-Id], timeout: 500ms, on_error: allow, cache_ttl: 10s}\n", ""},
		{"no url", "    upstream: a\n    forward_auth: {timeout: 1s}\n", "routes[0].forward_auth.url: required"},
		{"not http", "    upstream: a\n    forward_auth: {url: \"ftp://x/\"}\n", "routes.yaml:8:25: routes[0].forward_auth.url: must be an http or https URL"},
		{"on_error", "    upstream: a\n    forward_auth: {url: \"http://x/\", on_error: alow}\n", "routes[0].forward_auth.on_error: must be deny or allow, got \"alow\" (did you mean \"allow\"?)"},
		{"hop-by-hop request header", "    upstream: a\n    forward_auth: {url: \"http://x/\", request_headers: [Connection]}\n", "routes[0].forward_auth.request_headers[0]: Connection is set by the gateway"},
		{"bad response header", "    upstream: a\n    forward_auth: {url: \"http://x/\", response_headers: [\"X User\"]}\n", "routes[0].forward_auth.response_headers[0]: invalid header name"},
		{"timeout", "    upstream: a\n    forward_auth: {url: \"http://x/\", timeout: 2m}\n", "routes[0].forward_auth.timeout: must be greater than 0 and at most 1m"},
		{"cache without key", "    upstream: a\n    forward_auth: {url: \"http://x/\", request_headers: [], cache_ttl: 5s}\n", "routes[0].forward_auth.cache_ttl: a cache is keyed by request_headers"},
	})
}

func TestForwardAuthDefaults(t *testing.T) {
	c, err := Parse([]byte("upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /}, upstream: a, forward_auth: {url: \"http://x/\", response_headers: [x-user-id]}}]"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fa := c.Routes[0].ForwardAuth
	if !slices.Equal(fa.RequestHeaders, []string{"Authorization", "Cookie"}) || !slices.Equal(fa.ResponseHeaders, []string{"X-User-Id"}) ||
		fa.Timeout.D() != 2*time.Second || fa.OnError != AuthOnErrorDeny || fa.CacheTTL != 0 {
		t.Fatalf("forward_auth = %+v", fa)
	}
}
