package caddyconf

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/bench/benchcert"
	"github.com/archway-gateway/archway/bench/peerconf/peerconftest"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden keeps the Caddy translation of bench/routes.yaml reviewable: a change to the
// generator shows up as a diff of testdata/bench.Caddyfile (regenerate with -update).
func TestGolden(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: "127.0.0.1:18084", Admin: "127.0.0.1:19902"}); err != nil {
		t.Fatal(err)
	}
	peerconftest.Golden(t, buf.Bytes(), "bench.Caddyfile", *update)
}

// TestDirectives checks the parts of the translation the benchmark's fairness rests on: the
// same forwarding headers as Archway, upstream keep-alive, and what Caddy cannot do named.
func TestDirectives(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	var buf bytes.Buffer
	if err := Write(&buf, cfg, Options{Listen: "127.0.0.1:18084"}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"admin off",
		"auto_https off",
		"http://127.0.0.1:18084 {",
		"idle 90s",
		"@route_plain path /plain /plain/*",
		"reverse_proxy 127.0.0.1:18001 127.0.0.1:18002 {",
		"lb_policy least_conn",
		"header_up X-Real-IP {remote_host}",
		"header_up X-Forwarded-Proto http",
		"header_up X-Request-ID {http.request.uuid}",
		"header X-Request-ID {http.request.uuid}",
		"header_up X-Forwarded-Prefix \"/api\"",
		"uri strip_prefix /api",
		"keepalive_idle_conns_per_host 512",
		"# cache: Caddy's standard build has no response cache",
		"# rate_limit: Caddy's standard build has no rate limiter",
		"respond `{\"error\":\"method not allowed\"}` 405",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "X-Frame-Options") {
		t.Error("security headers are off in bench/routes.yaml, yet the translation sets them")
	}
	if got := Unsupported(cfg); !slices.Equal(got, []string{"limited: rate_limit", "cached: cache"}) {
		t.Errorf("Unsupported = %q", got)
	}
}

// TestProtocols: HTTP/1.1 alone over TLS unless the h2 scenario asks for HTTP/2 too; h2c beside
// HTTP/1.1 without TLS, as Archway's plain listener has it.
func TestProtocols(t *testing.T) {
	cfg := peerconftest.LoadBenchConfig(t)
	for _, c := range []struct {
		o    Options
		want []string
	}{
		{Options{TLSCert: "/d/c.pem", TLSKey: "/d/k.pem"}, []string{"protocols h1\n", "alpn http/1.1\n"}},
		{Options{TLSCert: "/d/c.pem", TLSKey: "/d/k.pem", HTTP2: true}, []string{"protocols h1 h2\n", "alpn h2 http/1.1\n"}},
		{Options{}, []string{"protocols h1 h2c\n"}},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, cfg, c.o); err != nil {
			t.Fatal(err)
		}
		for _, want := range c.want {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("%+v: missing %q in:\n%s", c.o, want, buf.String())
			}
		}
	}
}

func TestRefusesWhatItDoesNotTranslate(t *testing.T) {
	for _, yml := range []string{
		"upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /s}, static: {root: /srv}}]\n",
		"upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /, host: a.example}, upstream: a}]\n",
	} {
		cfg, err := config.Parse([]byte(yml), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := Write(&bytes.Buffer{}, cfg, Options{}); err == nil {
			t.Errorf("no error for %s", yml)
		}
	}
}

// TestCaddyAcceptsTheConfig runs caddy validate on the translation of bench/routes.yaml, with
// the access log on and off and with TLS.
func TestCaddyAcceptsTheConfig(t *testing.T) {
	caddy := testenv.RequireBinary(t, "caddy")
	cfg := peerconftest.LoadBenchConfig(t)
	dir := t.TempDir()
	logged := peerconftest.LoadBenchConfig(t)
	on := true
	logged.AccessLog.Enabled = &on
	logged.AccessLog.Output = filepath.Join(dir, "access.log")
	cert, err := benchcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		cfg *config.Config
		o   Options
	}{
		"plain":     {cfg, Options{Listen: testenv.FreeAddr(t), Admin: testenv.FreeAddr(t)}},
		"accesslog": {logged, Options{Listen: testenv.FreeAddr(t)}},
		"tls":       {cfg, Options{Listen: testenv.FreeAddr(t), TLSCert: cert.Cert, TLSKey: cert.Key}},
		"h2":        {cfg, Options{Listen: testenv.FreeAddr(t), TLSCert: cert.Cert, TLSKey: cert.Key, HTTP2: true}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, c.cfg, c.o); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(dir, name+".Caddyfile")
			if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(caddy, "validate", "--config", conf, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("caddy validate: %v\n%s\n%s", err, out, buf.String())
			}
			if strings.Contains(string(out), `"level":"warn","ts"`) && strings.Contains(string(out), `"logger":"caddyfile"`) {
				t.Errorf("caddy validate warns:\n%s", out)
			}
		})
	}
}
