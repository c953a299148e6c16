package policies

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

var _ server.Policies = (*Policies)(nil)

const secret = "0123456789abcdef0123456789abcdef"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTable(t *testing.T) *Policies {
	t.Helper()
	p := New(quiet())
	t.Cleanup(p.Close)
	return p
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return cfg
}

// everyPolicy is a configuration whose routes, together, ask for every per-route policy.
func everyPolicy(t *testing.T) *config.Config {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<p>hi</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parse(t, fmt.Sprintf(`
access_log: {enabled: false}
jwt: {secret: %q, algorithms: [HS256]}
upstreams: {api: {targets: ["127.0.0.1:1"]}}
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: api
    cors: {origins: ["https://shop.example.com"]}
    auth: {jwt: required}
    compression: {}
    rate_limit: {rate: 10/s, burst: 10}
    cache: {}
  - name: files
    match: {path_prefix: /}
    cors: {origins: ["https://shop.example.com"]}
    compression: {}
    static: {root: %q}
`, secret, root))
}

func TestEveryConfigPolicyHasOneRow(t *testing.T) {
	p := newTable(t)
	var names []config.PolicyName
	for _, row := range p.rows {
		if row.Name == "" || row.Has == nil || (row.Middleware == nil) == (row.Terminal == nil) {
			t.Errorf("row %q: needs a name, Has, and exactly one of Middleware and Terminal", row.Name)
		}
		if slices.Contains(names, row.Name) {
			t.Errorf("two rows build %s", row.Name)
		}
		names = append(names, row.Name)
	}
	for _, name := range config.PolicyNames() {
		if !slices.Contains(names, name) {
			t.Errorf("no row builds %s, which routes.yaml accepts", name)
		}
	}
}

// The order of the table is the order of the chain: a request meets the rows first to last.
func TestRouteBuildsEveryPolicyInTableOrder(t *testing.T) {
	p := newTable(t)
	cfg := everyPolicy(t)
	want := map[string][]config.PolicyName{
		"api":   {config.PolicyCORS, config.PolicyAuth, config.PolicyCompression, config.PolicyRateLimit, config.PolicyCache},
		"files": {config.PolicyCORS, config.PolicyCompression, config.PolicyStatic},
	}
	for _, rc := range cfg.Routes {
		forwarder := &proxy.Forwarder{}
		h, built, err := p.Route(rc, cfg, forwarder)
		if err != nil {
			t.Fatalf("route %s: %v", rc.Name, err)
		}
		asked := slices.Sorted(slices.Values(rc.Policies()))
		if !slices.Equal(built, want[rc.Name]) || !slices.Equal(slices.Sorted(slices.Values(built)), asked) {
			t.Errorf("route %s built %v, want %v (asked: %v)", rc.Name, built, want[rc.Name], rc.Policies())
		}
		if h == proxy.Handler(forwarder) {
			t.Errorf("route %s: handler is the bare forwarder", rc.Name)
		}
	}
	// A route asking for nothing gets its handler back as it is.
	plain := &config.Route{Name: "plain"}
	next := &proxy.Forwarder{}
	h, built, err := p.Route(plain, cfg, next)
	if err != nil || len(built) != 0 || h != proxy.Handler(next) {
		t.Fatalf("plain route: %v %v %v", h, built, err)
	}
}

func TestRegisterReportsRowMetrics(t *testing.T) {
	p := newTable(t)
	reg := prometheus.NewRegistry()
	if err := p.Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg := everyPolicy(t)
	for _, rc := range cfg.Routes {
		if _, _, err := p.Route(rc, cfg, &proxy.Forwarder{}); err != nil {
			t.Fatal(err)
		}
	}
	p.Commit(cfg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range families {
		got = append(got, f.GetName())
	}
	for _, want := range []string{"archway_cache_bytes", "archway_ratelimit_keys"} {
		if !slices.Contains(got, want) {
			t.Errorf("metrics lack %s: %v", want, got)
		}
	}
	// A second registration of the same collectors is refused, not silently doubled.
	if err := p.Register(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}

// Commit drops the state of routes the running configuration no longer has.
func TestCommitDropsStateOfRemovedRoutes(t *testing.T) {
	p := newTable(t)
	cfg := everyPolicy(t)
	for _, rc := range cfg.Routes {
		if _, _, err := p.Route(rc, cfg, &proxy.Forwarder{}); err != nil {
			t.Fatal(err)
		}
	}
	p.Commit(cfg)
	if p.Limits.Local("api") == nil || p.Caches.Store("api") == nil || p.Files.Servers() != 1 {
		t.Fatalf("after the first commit: limiter %v, cache %v, file servers %d", p.Limits.Local("api"), p.Caches.Store("api"), p.Files.Servers())
	}
	empty := parse(t, `
access_log: {enabled: false}
upstreams: {api: {targets: ["127.0.0.1:1"]}}
routes:
  - {name: other, match: {path_prefix: /}, upstream: api}
`)
	p.Commit(empty)
	if p.Limits.Local("api") != nil || p.Caches.Store("api") != nil || p.Files.Servers() != 0 {
		t.Fatalf("after the route went: limiter %v, cache %v, file servers %d", p.Limits.Local("api"), p.Caches.Store("api"), p.Files.Servers())
	}
}

// gatewayConfig has an open route and, when secured, a route that requires a token.
func gatewayConfig(upstream string, secured bool) string {
	y := fmt.Sprintf(`
access_log: {enabled: false}
jwt: {secret: %q, algorithms: [HS256]}
upstreams: {api: {targets: [%q]}}
routes:
  - {name: open, match: {path_prefix: /open}, upstream: api}
`, secret, upstream)
	if secured {
		y += "  - {name: secret, match: {path_prefix: /secret}, upstream: api, auth: {jwt: required}}\n"
	}
	return y
}

func serve(t *testing.T, gw *server.Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func status(t *testing.T, url string, header ...string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A table without the auth row must refuse a route with auth, at start and on reload, and the
// running configuration stays: served without the row, that route would answer 200 with no
// token. With the full table the same route answers 401 without a token and 200 with one.
func TestTableWithoutARowRefusesRoutesAskingForIt(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	upstream := strings.TrimPrefix(up.URL, "http://")

	partial := newTable(t)
	partial.rows = slices.DeleteFunc(partial.rows, func(r Row) bool { return r.Name == config.PolicyAuth })

	_, err := server.New(parse(t, gatewayConfig(upstream, true)), server.Options{Logger: quiet(), Policies: partial})
	if err == nil || !strings.Contains(err.Error(), "routes[1].auth: no policy builds it (route secret)") {
		t.Fatalf("server.New with a table without auth: %v", err)
	}

	gw, err := server.New(parse(t, gatewayConfig(upstream, false)), server.Options{Logger: quiet(), Policies: partial})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, gw)
	if s := status(t, url+"/open"); s != 200 {
		t.Fatalf("open route: %d", s)
	}
	if _, err := gw.Apply(parse(t, gatewayConfig(upstream, true)), "test"); err == nil || !strings.Contains(err.Error(), "routes[1].auth: no policy builds it") {
		t.Fatalf("Apply with a table without auth: %v", err)
	}
	if s := status(t, url+"/secret"); s != 404 {
		t.Fatalf("secured route after a refused reload: %d, want 404 (not served)", s)
	}
	if gw.Snapshot().Version != 1 {
		t.Fatalf("running version %d, want 1", gw.Snapshot().Version)
	}

	full, err := server.New(parse(t, gatewayConfig(upstream, true)), server.Options{Logger: quiet(), Policies: newTable(t)})
	if err != nil {
		t.Fatal(err)
	}
	url = serve(t, full)
	token := authtest.Sign(t, map[string]any{"alg": "HS256", "typ": "JWT"}, authtest.Claims("42"), authtest.HMACSigner([]byte(secret)))
	if s := status(t, url+"/secret"); s != 401 {
		t.Fatalf("secured route without a token: %d, want 401", s)
	}
	if s := status(t, url+"/secret", "Authorization", "Bearer "+token); s != 200 {
		t.Fatalf("secured route with a token: %d, want 200", s)
	}
}
