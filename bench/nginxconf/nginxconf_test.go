package nginxconf

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/bench/peerconf/peerconftest"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden keeps the nginx translation of bench/routes.yaml reviewable: a change to the
// generator shows up as a diff of testdata/bench.nginx.conf (regenerate with -update).
func TestGolden(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: "127.0.0.1:18081", Dir: "/tmp/archway-bench/nginx"}); err != nil {
		t.Fatal(err)
	}
	peerconftest.Golden(t, buf.Bytes(), "bench.nginx.conf", *update)
}

// TestDirectives checks the parts of the translation the benchmark's fairness rests on.
func TestDirectives(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: ":18081", Workers: "auto", Dir: "/d"}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"worker_processes auto;",
		"access_log off;",
		"listen 18081 reuseport",
		"upstream fixed {\n        least_conn;\n        server 127.0.0.1:18001 max_fails=3 fail_timeout=30s;",
		"keepalive 512;",
		"proxy_http_version 1.1;",
		"proxy_set_header Connection \"\";",
		"limit_req_zone $binary_remote_addr zone=rl_limited:13m rate=1000000r/s;",
		"limit_req zone=rl_limited burst=1000000 nodelay;",
		"proxy_cache_path /d/cache_cached levels=1:2 keys_zone=cache_cached:10m max_size=67108864 inactive=600s",
		"proxy_cache_valid 200 203 204 300 301 308 404 405 410 414 501 600s;",
		"location = /api/products {",
		"location /api/products/ {",
		"rewrite ^/api(/.*)$ $1 break;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_read_timeout 300s;",
		"client_max_body_size 52428800;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "X-Frame-Options") {
		t.Error("security headers are off in bench/routes.yaml, yet the translation adds them")
	}
	// The WebSocket location must not clear Connection; every other proxied one must.
	if n := strings.Count(out, "proxy_set_header Connection \"\";"); n != strings.Count(out, "proxy_pass")-2 { // = /ws and /ws/
		t.Errorf("Connection \"\" in %d locations, want every non-WebSocket one", n)
	}
}

func TestTranslations(t *testing.T) {
	rate := func(s string) config.Rate {
		r, err := config.ParseRate(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for in, want := range map[string]string{"10/s": "10r/s", "600/m": "10r/s", "30/m": "30r/m", "1000/h": "17r/m", "1/h": "1r/m"} {
		if got := nginxRate(rate(in)); got != want {
			t.Errorf("nginxRate(%s) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{"client_ip": "$binary_remote_addr", "header:X-Api-Key": "$http_x_api_key", "route": "$server_port"} {
		if got := limitKey(in); got != want {
			t.Errorf("limitKey(%s) = %s, want %s", in, got, want)
		}
	}
	if got := regexpQuote("/a.b+c"); got != `/a\.b\+c` {
		t.Errorf("regexpQuote = %s", got)
	}
	if l, _ := nginxListen(":8080"); l != "8080" {
		t.Errorf("listen :8080 = %s", l)
	}
}

// TestFilesAnswersAndCompression: static routes, direct answers and gzip, as the repository's
// routes.yaml uses them for the storefront and unknown API paths.
func TestFilesAnswersAndCompression(t *testing.T) {
	yml := `upstreams: {a: {targets: ["127.0.0.1:1"]}}
routes:
  - {name: gone, match: {path: /old}, respond: {status: 410, body: "moved away", content_type: text/plain}}
  - {name: unknown, match: {path_prefix: /api}, respond: {status: 404}}
  - name: site
    match: {path_prefix: /shop}
    static: {root: /srv/shop, spa_fallback: index.html, immutable: [/assets/]}
    compression: {types: [text/html, application/json]}
`
	cfg, err := config.Parse([]byte(yml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: "127.0.0.1:1", Dir: "/d"}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"location = /old {\n            default_type text/plain;\n            return 410 \"moved away\";",
		"location /api/ {\n            default_type application/json;\n            return 404 \"{\\\"error\\\":\\\"not found\\\"}\";",
		"root /srv/shop;",
		"try_files $uri $uri/ /index.html;",
		"add_header Cache-Control \"no-cache\" always;",
		"location ^~ /shop/assets/ {\n                try_files $uri =404;\n                add_header Cache-Control \"public, max-age=31536000, immutable\" always;",
		"gzip on;",
		"gzip_types application/json;", // text/html is implied and may not be repeated
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	// The exact-match location of /shop cannot hold the nested one.
	if n := strings.Count(out, "location ^~ /shop/assets/"); n != 1 {
		t.Errorf("nested immutable location written %d times, want 1", n)
	}
	if strings.Contains(out, "proxy_pass http://;") {
		t.Error("a route without an upstream got a proxy_pass")
	}
}

func TestRefusesWhatNginxCannotDo(t *testing.T) {
	for _, yml := range []string{
		"upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /s}, strip_prefix: /s, static: {root: /srv}}]\n",
		"upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /, host: a.example}, upstream: a}]\n",
		"upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /}, upstream: a, rate_limit: {rate: 1/s, key: \"jwt:sub\"}}]\n",
	} {
		cfg, err := config.Parse([]byte(yml), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := Write(&bytes.Buffer{}, cfg, Options{Dir: "/d"}); err == nil {
			t.Errorf("no error for %s", yml)
		}
	}
}

// TestNginxAcceptsTheConfig runs nginx -t on the translation of bench/routes.yaml and of the
// repository's own routes.yaml.
func TestNginxAcceptsTheConfig(t *testing.T) {
	nginx := testenv.RequireBinary(t, "nginx")
	for _, file := range []string{"bench/routes.yaml", "routes.yaml"} {
		t.Run(file, func(t *testing.T) {
			cfg, err := config.Load(filepath.Join(testenv.RepoRoot(), file))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for _, http2 := range []bool{false, true} { // true: the h2c scenario's listen ... http2
				var buf bytes.Buffer
				if err := Write(&buf, cfg, Options{Listen: testenv.FreeAddr(t), Dir: dir, HTTP2: http2}); err != nil {
					t.Fatal(err)
				}
				if got := strings.Contains(buf.String(), " http2 reuseport"); got != http2 {
					t.Errorf("HTTP2 %v: listen ... http2 = %v", http2, got)
				}
				conf := filepath.Join(dir, "nginx.conf")
				if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(nginx, "-t", "-q", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
				if err != nil {
					t.Fatalf("nginx -t: %v\n%s\n%s", err, out, buf.String())
				}
			}
		})
	}
}
