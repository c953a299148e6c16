package haproxyconf

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/bench/benchcert"
	"github.com/archway-gateway/archway/bench/peerconf/peerconftest"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden keeps the HAProxy translation of bench/routes.yaml reviewable: a change to the
// generator shows up as a diff of testdata/bench.haproxy.cfg (regenerate with -update).
func TestGolden(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: "127.0.0.1:18083", Dir: "/tmp/archway-bench/haproxy"}); err != nil {
		t.Fatal(err)
	}
	peerconftest.Golden(t, buf.Bytes(), "bench.haproxy.cfg", *update)
}

// TestDirectives checks the parts of the translation the benchmark's fairness rests on: the
// same forwarding headers as Archway, upstream keep-alive, the cache and the limit.
func TestDirectives(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: ":18083", Threads: 2, Dir: "/d"}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"nbthread 2",
		"bind 0.0.0.0:18083",
		"no log",
		"http-reuse always",
		"timeout http-keep-alive 90s",
		"use_backend route_plain if { path /plain } || { path_beg /plain/ }",
		"balance leastconn",
		"server t1 127.0.0.1:18001 pool-max-conn 512",
		"http-request set-header X-Forwarded-For %[src]",
		"http-request set-header X-Real-IP %[src]",
		"http-request set-header X-Forwarded-Host %[req.hdr(host)]",
		"http-request set-header X-Forwarded-Proto http",
		"http-request set-header X-Request-ID %[unique-id]",
		"http-response set-header X-Request-ID %[unique-id]",
		"http-request set-header X-Forwarded-Prefix \"/api\"",
		"http-request replace-path ^/api(/.*)$ \\1",
		"stick-table type ip size",
		"http-request deny deny_status 429 if { sc_http_req_rate(0) gt 2000000 }",
		"cache cache_cached",
		"max-age 600",
		"http-request cache-use cache_cached",
		"http-response cache-store cache_cached",
		"timeout tunnel 300s",
		"http-request return status 405",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "X-Frame-Options") {
		t.Error("security headers are off in bench/routes.yaml, yet the translation sets them")
	}
}

// TestBindProtocols: the TLS frontend offers HTTP/1.1 alone unless the h2 scenario asks for
// HTTP/2 too; the plain one speaks HTTP/1.1, or h2c alone for the h2c scenario.
func TestBindProtocols(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Listen: ":1", Dir: "/d", TLS: "/d/bench.pem"}, "bind 0.0.0.0:1 ssl crt /d/bench.pem alpn http/1.1\n"},
		{Options{Listen: ":1", Dir: "/d", TLS: "/d/bench.pem", HTTP2: true}, "bind 0.0.0.0:1 ssl crt /d/bench.pem alpn h2,http/1.1\n"},
		{Options{Listen: ":1", Dir: "/d"}, "bind 0.0.0.0:1\n"},
		{Options{Listen: ":1", Dir: "/d", HTTP2: true}, "bind 0.0.0.0:1 proto h2\n"},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, cfg, c.o); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), c.want) {
			t.Errorf("%+v: missing %q in:\n%s", c.o, c.want, buf.String())
		}
	}
}

func TestAccessLogNeedsASocket(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	on := true
	cfg.AccessLog.Enabled = &on
	if err := Write(&bytes.Buffer{}, cfg, Options{Dir: "/d"}); err == nil {
		t.Fatal("access log on without LogAddr: no error")
	}
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Dir: "/d", LogAddr: "/d/log.sock"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"log /d/log.sock", "option httplog", "log global"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("missing %q", want)
		}
	}
}

func TestRefusesWhatItDoesNotTranslate(t *testing.T) {
	for _, yml := range []string{
		"upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /s}, static: {root: /srv}}]\n",
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

// TestHAProxyAcceptsTheConfig runs haproxy -c on the translation of bench/routes.yaml, with the
// access log on and off and with TLS.
func TestHAProxyAcceptsTheConfig(t *testing.T) {
	haproxy := testenv.RequireBinary(t, "haproxy")
	cfg := peerconftest.LoadBenchConfig(t)
	logged := peerconftest.LoadBenchConfig(t)
	on := true
	logged.AccessLog.Enabled = &on
	dir := t.TempDir()
	cert, err := benchcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	pem := cert.Combined
	for name, c := range map[string]struct {
		cfg *config.Config
		o   Options
	}{
		"plain":     {cfg, Options{Listen: testenv.FreeAddr(t), Dir: dir}},
		"accesslog": {logged, Options{Listen: testenv.FreeAddr(t), Dir: dir, LogAddr: filepath.Join(dir, "log.sock")}},
		"tls":       {cfg, Options{Listen: testenv.FreeAddr(t), Dir: dir, TLS: pem, Threads: 2}},
		"h2":        {cfg, Options{Listen: testenv.FreeAddr(t), Dir: dir, TLS: pem, HTTP2: true}},
		"h2c":       {cfg, Options{Listen: testenv.FreeAddr(t), Dir: dir, HTTP2: true}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, c.cfg, c.o); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(dir, name+".cfg")
			if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(haproxy, "-c", "-f", conf).CombinedOutput()
			if err != nil {
				t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, buf.String())
			}
			if strings.Contains(string(out), "[WARNING]") {
				t.Errorf("haproxy -c warns:\n%s", out)
			}
		})
	}
}
