package server_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	indexHTML = "<!doctype html><title>Archway</title><div id=root></div>"
	secret    = "TOP-SECRET-OUTSIDE-ROOT"
)

// storefrontDir builds a dist directory like Vite's, a secret next to it, and symbolic links
// out of it and within it.
func storefrontDir(t *testing.T) (root string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "dist")
	files := map[string]string{
		"index.html":                   indexHTML,
		"favicon.svg":                  "<svg/>",
		"assets/index-DiwrgTda.js":     strings.Repeat("console.log('archway');\n", 200),
		"assets/index-BxK_wq-L.css":    "body{margin:0}",
		"docs/index.html":              "<p>docs</p>",
		"empty-dir/.keep":              "",
		"with space.txt":               "spaced",
		"caf\u00e9.txt":                "unicode",
		"../secret.txt":                secret,
		"../dist-sibling/private.html": secret,
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"leak.txt":         filepath.Join(base, "secret.txt"),
		"assets/leak.js":   "../../secret.txt",
		"leakdir":          base,
		"inside-link.html": "index.html",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func staticConfig(root string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {api: {targets: ["127.0.0.1:1"]}}
routes:
  - name: storefront
    match: {path_prefix: /}
    static: {root: "%s", spa_fallback: index.html}
    compression: {min_size: 0}
  - name: downloads
    match: {path_prefix: /downloads}
    strip_prefix: /downloads
    static: {root: "%s"}
`, root, root)
}

func TestStaticFiles(t *testing.T) {
	root := storefrontDir(t)
	_, opt := withPolicies(t)
	gw := startGateway(t, staticConfig(root), opt)
	js := strings.Repeat("console.log('archway');\n", 200)

	t.Run("index and cache headers", func(t *testing.T) {
		r := get(t, gw.URL+"/", "Accept-Encoding", "identity")
		expectStatus(t, r, 200)
		if r.Body != indexHTML || !strings.HasPrefix(r.Headers.Get("Content-Type"), "text/html") || r.Headers.Get("Cache-Control") != "no-cache" {
			t.Fatalf("/: %q %q %q", r.Body, r.Headers.Get("Content-Type"), r.Headers.Get("Cache-Control"))
		}
		r = get(t, gw.URL+"/assets/index-DiwrgTda.js", "Accept-Encoding", "identity")
		expectStatus(t, r, 200)
		if r.Body != js || r.Headers.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Fatalf("hashed asset: Cache-Control %q", r.Headers.Get("Cache-Control"))
		}
		if !strings.Contains(r.Headers.Get("Content-Type"), "javascript") || r.Headers.Get("Last-Modified") == "" || r.Headers.Get("ETag") == "" {
			t.Fatalf("asset headers %v", r.Headers)
		}
		if r.Headers.Get("X-Content-Type-Options") != "nosniff" || r.Headers.Get("X-Request-Id") == "" {
			t.Fatal("security headers or request id missing on a static response")
		}
		r = get(t, gw.URL+"/favicon.svg")
		if r.Headers.Get("Cache-Control") != "no-cache" {
			t.Fatalf("unhashed file: Cache-Control %q", r.Headers.Get("Cache-Control"))
		}
		for path, body := range map[string]string{"/with%20space.txt": "spaced", "/caf%C3%A9.txt": "unicode", "/inside-link.html": indexHTML, "/docs/": "<p>docs</p>"} {
			if r := get(t, gw.URL+path); r.Status != 200 || r.Body != body {
				t.Errorf("%s: %d %q", path, r.Status, r.Body)
			}
		}
	})

	t.Run("conditional requests", func(t *testing.T) {
		first := get(t, gw.URL+"/assets/index-DiwrgTda.js")
		etag, lastMod := first.Headers.Get("ETag"), first.Headers.Get("Last-Modified")
		for name, h := range map[string][]string{
			"If-None-Match":     {"If-None-Match", etag},
			"If-Modified-Since": {"If-Modified-Since", lastMod},
		} {
			r := get(t, gw.URL+"/assets/index-DiwrgTda.js", h...)
			if r.Status != 304 || r.Body != "" || r.Headers.Get("Cache-Control") != "public, max-age=31536000, immutable" {
				t.Errorf("%s: status %d, Cache-Control %q", name, r.Status, r.Headers.Get("Cache-Control"))
			}
		}
		r := get(t, gw.URL+"/", "If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		if r.Status != 304 || r.Headers.Get("Cache-Control") != "no-cache" {
			t.Errorf("index 304: %d %q", r.Status, r.Headers.Get("Cache-Control"))
		}
		expectStatus(t, get(t, gw.URL+"/assets/index-DiwrgTda.js", "If-None-Match", `W/"other"`), 200)
	})

	t.Run("HEAD and Range", func(t *testing.T) {
		r := do(t, "HEAD", gw.URL+"/assets/index-DiwrgTda.js", nil, "Accept-Encoding", "identity")
		if r.Status != 200 || r.Body != "" || r.Headers.Get("Content-Length") != fmt.Sprint(len(js)) {
			t.Fatalf("HEAD: %d, %d bytes, Content-Length %q", r.Status, len(r.Body), r.Headers.Get("Content-Length"))
		}
		r = get(t, gw.URL+"/assets/index-DiwrgTda.js", "Range", "bytes=0-9", "Accept-Encoding", "gzip")
		if r.Status != 206 || r.Body != js[:10] || r.Headers.Get("Content-Range") != fmt.Sprintf("bytes 0-9/%d", len(js)) {
			t.Fatalf("Range: %d %q %q", r.Status, r.Body, r.Headers.Get("Content-Range"))
		}
		if r.Headers.Get("Content-Encoding") != "" {
			t.Fatal("a partial response was compressed")
		}
		expectStatus(t, get(t, gw.URL+"/assets/index-DiwrgTda.js", "Range", "bytes=999999-"), 416)
	})

	t.Run("gzip of static files", func(t *testing.T) {
		r := get(t, gw.URL+"/assets/index-DiwrgTda.js", "Accept-Encoding", "gzip")
		if r.Headers.Get("Content-Encoding") != "gzip" || gunzip(t, r.Body) != js || !varies(r, "Accept-Encoding") {
			t.Fatalf("Content-Encoding %q", r.Headers.Get("Content-Encoding"))
		}
		if r.Headers.Get("Cache-Control") != "public, max-age=31536000, immutable" || r.Headers.Get("Accept-Ranges") != "" {
			t.Fatalf("headers %v", r.Headers)
		}
	})

	t.Run("SPA fallback", func(t *testing.T) {
		for _, path := range []string{"/products/42", "/orders", "/cart?step=2", "/empty-dir/", "/empty-dir"} {
			r := get(t, gw.URL+path)
			if r.Status != 200 || r.Body != indexHTML || r.Headers.Get("Cache-Control") != "no-cache" {
				t.Errorf("%s: %d %q %q", path, r.Status, r.Body, r.Headers.Get("Cache-Control"))
			}
		}
		// A missing hashed asset is a 404, not HTML under a script's name.
		r := get(t, gw.URL+"/assets/index-0ld0ld00.js")
		if r.Status != 404 || strings.Contains(r.Body, "<title>") || !strings.HasPrefix(r.Headers.Get("Content-Type"), "application/json") {
			t.Errorf("missing asset: %d %q", r.Status, r.Body)
		}
	})

	t.Run("methods", func(t *testing.T) {
		r := do(t, "POST", gw.URL+"/index.html", strings.NewReader("x"))
		if r.Status != 405 || r.Headers.Get("Allow") != "GET, HEAD" {
			t.Fatalf("POST: %d, Allow %q", r.Status, r.Headers.Get("Allow"))
		}
	})

	t.Run("strip_prefix and directory redirect", func(t *testing.T) {
		r := get(t, gw.URL+"/downloads/favicon.svg")
		if r.Status != 200 || r.Body != "<svg/>" {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
		r = rawRequest(t, gw.Addr, "GET /downloads/docs?x=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
		loc := r.Headers.Get("Location")
		if r.Status != 302 || !strings.HasSuffix(loc, "/downloads/docs/?x=1") {
			t.Fatalf("directory redirect: %d Location %q", r.Status, loc)
		}
		r = get(t, gw.URL+"/downloads/nothing-here")
		if r.Status != 404 {
			t.Fatalf("no fallback on this route: %d", r.Status)
		}
	})

	t.Run("traversal refused", func(t *testing.T) {
		for _, target := range []string{
			"/../secret.txt", "/..%2Fsecret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
			"/assets/..%2F..%2Fsecret.txt", "/a%2F..%2F..%2Fsecret.txt", "/..%5Csecret.txt", "/..\\secret.txt",
			"/%252e%252e/secret.txt", "/leak.txt", "/assets/leak.js", "/leakdir/secret.txt",
			"/leakdir/dist-sibling/private.html", "/downloads/../secret.txt", "/downloads/%2e%2e/secret.txt",
			"/../dist-sibling/private.html", "/dist/../dist-sibling/private.html",
		} {
			r := rawRequest(t, gw.Addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if strings.Contains(r.Body, secret) {
				t.Errorf("%s served a file outside the root", target)
			}
			if r.Status == 200 && r.Body != indexHTML {
				t.Errorf("%s: 200 with %q", target, r.Body)
			}
		}
	})
}

// TestStaticLifecycle: a reload keeps the file server of a root still served and stops it when
// no live configuration serves that root; a missing root or fallback fails the build and keeps
// the running configuration.
func TestStaticLifecycle(t *testing.T) {
	root := storefrontDir(t)
	e, opt := withPolicies(t)
	gw := startGateway(t, staticConfig(root), opt)
	if n := e.Files.Servers(); n != 1 {
		t.Fatalf("%d file servers for one root, want 1", n)
	}
	if _, err := gw.Apply(mustParse(t, staticConfig(root)), "test"); err != nil {
		t.Fatal(err)
	}
	if n := e.Files.Servers(); n != 1 {
		t.Fatalf("%d file servers after a reload, want 1", n)
	}
	for _, bad := range []string{
		strings.Replace(staticConfig(root), "spa_fallback: index.html", "spa_fallback: missing.html", 1),
		strings.ReplaceAll(staticConfig(root), root, root+"-missing"),
	} {
		if _, err := gw.Apply(mustParse(t, bad), "test"); err == nil {
			t.Fatal("a static route with a missing root or fallback was accepted")
		}
	}
	expectStatus(t, get(t, gw.URL+"/"), 200)
	proxied := `
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {api: {targets: ["127.0.0.1:1"]}}
routes: [{name: api, match: {path_prefix: /}, upstream: api}]
`
	if _, err := gw.Apply(mustParse(t, proxied), "test"); err != nil {
		t.Fatal(err)
	}
	if n := e.Files.Servers(); n != 0 {
		t.Fatalf("%d file servers after the static route went away", n)
	}
}
