package static

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

func TestHandlerTable(t *testing.T) {
	root := t.TempDir()
	for name, body := range map[string]string{
		"index.html": "<html>app</html>", "assets/app-1a2b3c4d.js": "js()", "robots.txt": "User-agent: *",
		"a%2Fb.txt": "literal percent name", "docs/index.html": "<p>docs</p>",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := NewRegistry(nil)
	defer m.Close()
	route := &config.Route{Name: "files", StripPrefix: "/app",
		Static: &config.Static{Root: root, Index: "index.html", SPAFallback: "index.html", Immutable: []string{"/assets/"}}}
	h, err := m.Handler(route, nil)
	if err != nil {
		t.Fatal(err)
	}
	const immutable, revalidate = "public, max-age=31536000, immutable", "no-cache"
	for _, tc := range []struct {
		path         string
		method       int // index in protocol.Methods
		status       int
		cacheControl string
		body         string
	}{
		{"/app", 0, 200, revalidate, "<html>app</html>"},
		{"/app/", 0, 200, revalidate, "<html>app</html>"},
		{"/app/assets/app-1a2b3c4d.js", 0, 200, immutable, "js()"},
		{"/app/assets/app-1a2b3c4d.js", 1, 200, immutable, ""},
		{"/app/robots.txt", 0, 200, revalidate, "User-agent: *"},
		{"/app/docs/", 0, 200, revalidate, "<p>docs</p>"},
		{"/app/products/42", 0, 200, revalidate, "<html>app</html>"},
		{"/app/assets/gone-00000000.js", 0, 404, "", "file not found"},
		{"/app/a%2Fb.txt", 0, 404, "", "file not found"},
		{"/app/x%5C..%5Csecret", 0, 404, "", "file not found"},
		{"/app/robots.txt", 2, 405, "", "GET and HEAD"},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, nil, quietLogger{}) // FS logs misses through the ctx's server
		ctx.Request.Header.SetMethod([]string{"GET", "HEAD", "POST"}[tc.method])
		ctx.Request.SetRequestURI(tc.path)
		x := &proxy.Exchange{Ctx: &ctx, Path: []byte(tc.path), Method: tc.method}
		h.Serve(x)
		resp := &ctx.Response
		body := string(resp.Body())
		if resp.IsBodyStream() {
			body = string(resp.Body()) // reads the file stream
		}
		if resp.StatusCode() != tc.status || string(resp.Header.Peek("Cache-Control")) != tc.cacheControl || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s: %d %q %q; want %d %q %q", []string{"GET", "HEAD", "POST"}[tc.method], tc.path,
				resp.StatusCode(), resp.Header.Peek("Cache-Control"), body, tc.status, tc.cacheControl, tc.body)
		}
		resp.Reset()
	}
	if _, err := m.Handler(&config.Route{Static: &config.Static{Root: filepath.Join(root, "robots.txt"), Index: "index.html"}}, nil); err == nil {
		t.Error("a file as root was accepted")
	}
	if _, err := m.Handler(&config.Route{Static: &config.Static{Root: root, Index: "index.html", SPAFallback: "../etc/passwd"}}, nil); err == nil {
		t.Error("a fallback outside root was accepted")
	}
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
