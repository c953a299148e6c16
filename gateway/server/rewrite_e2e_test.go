package server_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestRewriteAndRedirectOverRealSockets: /old/(.*) → /new/$1 on the way upstream; www → apex
// and an old page moved, answered by the gateway and followed as a client follows them.
func TestRewriteAndRedirectOverRealSockets(t *testing.T) {
	app := startUpstream(t, "app", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - name: legacy-api
    match: {path_prefix: /old}
    upstream: app
    rewrite: {regex: "^/old/(.*)$", replacement: /new/$1}
  - name: www
    match: {path_prefix: /, host: www.example.com}
    redirect: {to: "https://example.com$request_uri", status: 301}
  - name: moved
    match: {path: /catalogue}
    redirect: {to: "$scheme://$http_host/products?$args", status: 308}
  - name: app
    match: {path_prefix: /}
    upstream: app
`, app.Addr), opt)

	r := get(t, gw.URL+"/old/items/42?color=red")
	expectStatus(t, r, 200)
	if got := app.last(t).URI; got != "/new/items/42?color=red" {
		t.Errorf("upstream saw %q, want /new/items/42?color=red", got)
	}
	r = get(t, gw.URL+"/oldies")
	expectStatus(t, r, 200)
	if got := app.last(t).URI; got != "/oldies" {
		t.Errorf("a path the regex does not match reached the upstream as %q", got)
	}

	// www → apex: the status and Location a browser gets.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", gw.URL+"/cart?id=7", nil)
	req.Host = "www.example.com"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://example.com/cart?id=7" {
		t.Fatalf("www: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Followed as curl -L follows it: the client ends on the page the redirect names.
	before := app.count()
	resp, err = http.Get(gw.URL + "/catalogue?page=2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/products" || resp.Request.URL.RawQuery != "page=2" {
		t.Fatalf("following /catalogue ended at %s with %d", resp.Request.URL, resp.StatusCode)
	}
	if app.count() != before+1 || app.last(t).URI != "/products?page=2" {
		t.Errorf("the upstream saw %d requests, last %q; want only the redirected one", app.count()-before, app.last(t).URI)
	}
}
