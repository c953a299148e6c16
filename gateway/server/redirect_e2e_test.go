package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// noFollow is a client that shows each redirect instead of following it.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestRedirectsThroughAStrippedPrefix: an upstream that knows nothing of the gateway's /api prefix
// redirects to its own paths and to its own address; a client following every Location (as curl
// -L does) lands on the upstream's JSON, never outside the route. Other hosts are left alone,
// `redirects: keep` passes the upstream's URLs through, and explicit pairs and cookie rules apply.
func TestRedirectsThroughAStrippedPrefix(t *testing.T) {
	var self string
	app := startUpstream(t, "app", func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		switch {
		case path == "/old":
			ctx.Redirect("/items/7", http.StatusMovedPermanently)
			ctx.Response.Header.Set("Location", "/items/7") // fasthttp would make it absolute
		case path == "/abs":
			ctx.Response.Header.Set("Location", "http://"+self+"/items/8")
			ctx.SetStatusCode(http.StatusFound)
		case path == "/away":
			ctx.Response.Header.Set("Location", "https://pay.example.com/x")
			ctx.SetStatusCode(http.StatusFound)
		case path == "/login":
			ctx.Response.Header.Add("Set-Cookie", "sid=1; Path=/; HttpOnly")
			ctx.Response.Header.Set("Refresh", "0; url=/items/1")
		case path == "/create":
			ctx.Response.Header.Set("Location", "/items/9")
			ctx.Response.Header.Set("Content-Location", "/items/9")
			ctx.SetStatusCode(http.StatusCreated)
		case strings.HasPrefix(path, "/items/"):
			ctx.SetContentType("application/json")
			fmt.Fprintf(ctx, `{"id":%q,"upstream_path":%q}`, strings.TrimPrefix(path, "/items/"), path)
		default:
			ctx.SetStatusCode(http.StatusNotFound)
		}
	})
	self = app.Addr
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: shop, match: {path_prefix: /api}, strip_prefix: /api, upstream: app}
  - {name: raw, match: {path_prefix: /raw}, strip_prefix: /raw, upstream: app, redirects: keep}
  - name: legacy
    match: {path_prefix: /legacy}
    strip_prefix: /legacy
    upstream: app
    redirects:
      map: [{from: "https://pay.example.com/", to: /legacy/pay/}]
      cookie_path: [{from: /, to: /legacy/}]
`, app.Addr))

	// A client following every Location gets the upstream's JSON through the route.
	for _, path := range []string{"/api/old", "/api/abs", "/api/items/3"} {
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			ID           string `json:"id"`
			UpstreamPath string `json:"upstream_path"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/api/items/") || "/api"+body.UpstreamPath != resp.Request.URL.Path {
			t.Errorf("GET %s, following redirects: %d at %s (%v)", path, resp.StatusCode, resp.Request.URL, err)
		}
	}

	for _, tc := range []struct{ method, path, header, want string }{
		{"GET", "/api/old", "Location", "/api/items/7"},
		{"GET", "/api/abs", "Location", gw.URL + "/api/items/8"},
		{"GET", "/api/away", "Location", "https://pay.example.com/x"},
		{"POST", "/api/create", "Location", "/api/items/9"},
		{"POST", "/api/create", "Content-Location", "/api/items/9"},
		{"GET", "/api/login", "Refresh", "0; url=/api/items/1"},
		{"GET", "/api/login", "Set-Cookie", "sid=1; Path=/; HttpOnly"}, // cookie rules are off by default
		{"GET", "/raw/old", "Location", "/items/7"},
		{"GET", "/raw/abs", "Location", "http://" + app.Addr + "/items/8"},
		{"GET", "/legacy/away", "Location", "/legacy/pay/x"},
		{"GET", "/legacy/old", "Location", "/legacy/items/7"},
		{"GET", "/legacy/login", "Set-Cookie", "sid=1; Path=/legacy/; HttpOnly"},
	} {
		req, _ := http.NewRequest(tc.method, gw.URL+tc.path, nil)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Values(tc.header); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, tc.header, got, tc.want)
		}
	}
}
