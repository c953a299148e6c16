package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/admin"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/policies"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

const adminConfig = `
access_log: {enabled: false}
admin: {token: "s3cret-admin-token-1"}
upstreams: {api: {targets: ["127.0.0.1:1"]}}
routes:
  - {name: api, match: {path_prefix: /api}, upstream: api, cache: {}}
`

// startAdmin serves the admin API of a gateway built with the full policy table (never
// serving traffic: the admin API only reads and swaps its configuration).
func startAdmin(t *testing.T) (*server.Gateway, string) {
	t.Helper()
	cfg, err := config.Parse([]byte(adminConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol := policies.New(logger)
	t.Cleanup(pol.Close)
	reg := prometheus.NewRegistry()
	gw, err := server.New(cfg, server.Options{Logger: logger, Registerer: reg, Policies: pol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	srv := httptest.NewServer(admin.Handler(gw, reg, logger, admin.WithCache(pol.Caches)))
	t.Cleanup(srv.Close)
	return gw, srv.URL
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v any
	_ = json.Unmarshal(raw, &v)
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{"_": v}
	}
	return resp.StatusCode, m
}

func TestAdminAPI(t *testing.T) {
	gw, url := startAdmin(t)
	const token = "s3cret-admin-token-1"
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		want                            string // in the JSON body
	}{
		{"health needs no token", "GET", "/health", "", "", 200, "ok"},
		{"routes need the token", "GET", "/routes", "", "", 401, "admin token"},
		{"wrong token", "GET", "/routes", "nope", "", 401, "admin token"},
		{"routes", "GET", "/routes", token, "", 200, "/api"},
		{"config hides the token", "GET", "/config", token, "", 200, "[redacted]"},
		{"invalid config names line and field", "PUT", "/config", token, adminConfig + "  - {name: api, match: {path_prefix: /x}, upstream: nope}\n", 400, "routes[1].upstream"},
		{"dry run changes nothing", "PUT", "/config?dry_run=true", token, strings.Replace(adminConfig, "/api", "/v2", 1), 200, "dry_run:true"},
		{"purge an unknown route", "DELETE", "/cache?route=nope", token, "", 404, "has no cache"},
		{"purge needs a path prefix", "DELETE", "/cache?prefix=x", token, "", 400, "prefix must start with /"},
		{"purge one route", "DELETE", "/cache?route=api", token, "", 200, "api"},
		{"apply", "PUT", "/config", token, strings.Replace(adminConfig, "/api", "/v2", 1), 200, "applied:true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, tc.method, url+tc.path, tc.token, tc.body)
			if code != tc.status {
				t.Fatalf("%s %s: %d %v, want %d", tc.method, tc.path, code, body, tc.status)
			}
			if got := strings.ReplaceAll(fmtJSON(body), " ", ""); !strings.Contains(got, strings.ReplaceAll(tc.want, " ", "")) {
				t.Fatalf("%s %s: body %s lacks %q", tc.method, tc.path, got, tc.want)
			}
		})
	}
	if v := gw.Snapshot().Version; v != 2 {
		t.Fatalf("version %d after one apply, want 2 (dry run and invalid configs change nothing)", v)
	}
	if p := gw.Config().Routes[0].Match.PathPrefix; p != "/v2" {
		t.Fatalf("running route prefix %s", p)
	}
}

// fmtJSON renders a decoded body for substring checks: maps as key:value, so "applied:true"
// and "dry_run:true" can be looked for.
func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return strings.NewReplacer(`"`, "", `\u003e`, ">").Replace(string(b))
}
