package rewrite

import (
	"net/netip"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// exchange builds an exchange for a request as the entry handler would have normalised it.
func exchange(t *testing.T, raw string, trusted bool, path, query string) *proxy.Exchange {
	t.Helper()
	ctx := &fasthttp.RequestCtx{}
	if err := ctx.Request.Header.Read(bufioReader(raw)); err != nil {
		t.Fatal(err)
	}
	return &proxy.Exchange{Ctx: ctx, Path: []byte(path), Query: []byte(query), PeerTrusted: trusted, Peer: netip.MustParseAddr("10.0.0.1")}
}

func TestRedirectLocation(t *testing.T) {
	for _, tc := range []struct {
		name, to, raw string
		trusted       bool
		path, query   string
		want          string
	}{
		{"www to apex", "https://example.com$request_uri",
			"GET /a/b?x=1 HTTP/1.1\r\nHost: www.example.com\r\n\r\n", false, "/a/b", "x=1", "https://example.com/a/b?x=1"},
		{"http to https keeps the host, without port", "https://$host$request_uri",
			"GET /p HTTP/1.1\r\nHost: Shop.Example.com:8080\r\n\r\n", false, "/p", "", "https://shop.example.com/p"},
		{"IPv6 host", "http://$host/x",
			"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", false, "/", "", "http://[::1]/x"},
		{"scheme from a trusted proxy", "$scheme://$host/login",
			"GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-Proto: https\r\n\r\n", true, "/", "", "https://a.example/login"},
		{"scheme from an untrusted client is ignored", "$scheme://$host/login",
			"GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-Proto: https\r\n\r\n", false, "/", "", "http://a.example/login"},
		{"uri and args", "/v2$uri?$args",
			"GET /v1/../items?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", false, "/items", "q=1", "/v2/items?q=1"},
		{"host as sent, port included", "http://$http_host/x",
			"GET / HTTP/1.1\r\nHost: Shop.Example.com:8080\r\n\r\n", false, "/", "", "http://Shop.Example.com:8080/x"},
		{"literal dollar", "/price$$", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, "/", "", "/price$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRedirect(&config.Redirect{To: tc.to, Status: 301})
			if err != nil {
				t.Fatal(err)
			}
			x := exchange(t, tc.raw, tc.trusted, tc.path, tc.query)
			r.Serve(x)
			resp := &x.Ctx.Response
			if got := string(resp.Header.Peek("Location")); got != tc.want || resp.StatusCode() != 301 {
				t.Fatalf("%d Location %q, want 301 %q", resp.StatusCode(), got, tc.want)
			}
		})
	}
}
