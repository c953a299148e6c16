package api_test

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
)

func TestURLHonoursForwardingHeaders(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
	}{
		{"direct", nil, "/orders/7"},
		{"through the gateway", []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "shop.example", "X-Forwarded-Prefix", "/api"}, "https://shop.example/api/orders/7"},
		{"prefix only", []string{"X-Forwarded-Prefix", "/api/"}, "/api/orders/7"},
		{"proto only: the request's Host", []string{"X-Forwarded-Proto", "https"}, "https://orders.internal:3003/orders/7"},
		{"a chain of proxies: the outermost", []string{"X-Forwarded-Host", "shop.example:8443, gw.internal", "X-Forwarded-Proto", "HTTPS, http"}, "https://shop.example:8443/orders/7"},
		{"odd scheme ignored", []string{"X-Forwarded-Proto", "javascript", "X-Forwarded-Host", "shop.example"}, "http://shop.example/orders/7"},
		{"host with a path ignored", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", "evil.example/x"}, "http://orders.internal:3003/orders/7"},
		{"host with userinfo ignored", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", "a@evil.example"}, "http://orders.internal:3003/orders/7"},
		{"network-path prefix ignored", []string{"X-Forwarded-Prefix", "//evil.example"}, "/orders/7"},
		{"prefix with a quote ignored", []string{"X-Forwarded-Prefix", `/a"b`}, "/orders/7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.SetRequestURI("/orders")
			ctx.Request.Header.SetHost("orders.internal:3003")
			for i := 0; i+1 < len(tc.headers); i += 2 {
				ctx.Request.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			if got := api.URL(&ctx, "/orders/7"); got != tc.want {
				t.Fatalf("URL = %q, want %q", got, tc.want)
			}
		})
	}
}
