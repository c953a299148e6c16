package config

import (
	"strings"
	"testing"
)

func redirectsConfig(routes string) string {
	return "upstreams: {app: {targets: [\"127.0.0.1:3000\"]}}\nroutes:\n" + routes
}

func TestRedirectsDefaultsAndForms(t *testing.T) {
	cfg, err := ParseWithEnv([]byte(redirectsConfig(`
  - {name: stripped, match: {path_prefix: /api}, strip_prefix: /api, upstream: app}
  - {name: added, match: {path_prefix: /v1}, add_prefix: /v2, upstream: app}
  - {name: plain, match: {path_prefix: /p}, upstream: app}
  - {name: kept, match: {path_prefix: /k}, strip_prefix: /k, upstream: app, redirects: keep}
  - {name: short, match: {path_prefix: /s}, upstream: app, redirects: "${MODE}"}
  - name: mapped
    match: {path_prefix: /m}
    upstream: app
    redirects:
      map: [{from: "http://legacy.internal/", to: /m/}]
      cookie_path: [{from: /, to: /m/}]
      cookie_domain: [{from: .legacy.internal, to: shop.example}]
  - {name: files, match: {path_prefix: /f}, strip_prefix: /f, static: {root: /tmp}}
`)), "routes.yaml", func(k string) (string, bool) { return map[string]string{"MODE": "rewrite"}[k], true })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"stripped": "rewrite", "added": "rewrite", "plain": "", "kept": "keep", "short": "rewrite", "mapped": "rewrite", "files": ""}
	for name, mode := range want {
		r := cfg.RouteByName(name)
		got := ""
		if r.Redirects != nil {
			got = r.Redirects.Mode
		}
		if got != mode {
			t.Errorf("route %s: redirects mode %q, want %q", name, got, mode)
		}
	}
	m := cfg.RouteByName("mapped").Redirects
	if len(m.Map) != 1 || m.Map[0].To != "/m/" || len(m.CookiePath) != 1 || m.CookieDomain[0].To != "shop.example" {
		t.Errorf("mapped: %+v", m)
	}
	if !strings.Contains(string(cfg.Redacted()), "mode: rewrite") {
		t.Errorf("the effective configuration does not show the default:\n%s", cfg.Redacted())
	}
}

func TestRedirectsErrors(t *testing.T) {
	for _, tc := range []struct{ routes, want string }{
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: rewrit}`,
			`routes.yaml:3:67: routes[0].redirects: expected rewrite, keep or a mapping, found "rewrit" (did you mean "rewrite"?)`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {mode: kep}}`,
			`routes[0].redirects.mode: must be rewrite or keep, got "kep" (did you mean "keep"?)`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {mod: keep}}`,
			`routes[0].redirects.mod: unknown field "mod" (did you mean "mode"?)`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {mode: keep, map: [{from: /x, to: /y}]}}`,
			`routes[0].redirects.map: mode keep rewrites nothing`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {map: [{from: "ftp://x/", to: /y}]}}`,
			`routes[0].redirects.map[0].from: must be an absolute http(s) URL without query, or a path starting with /, got "ftp://x/"`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {map: [{from: /x, to: ""}]}}`,
			`routes[0].redirects.map[0].to: must be`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {cookie_path: [{from: x, to: /y}]}}`,
			`routes[0].redirects.cookie_path[0].from: must be a path starting with /`},
		{`  - {name: a, match: {path_prefix: /a}, upstream: app, redirects: {cookie_domain: [{from: "a b", to: x.example}]}}`,
			`routes[0].redirects.cookie_domain[0].from: must be a domain name`},
		{`  - {name: a, match: {path_prefix: /a}, respond: {status: 404}, redirects: keep}`,
			`routes[0].redirects: only a route that proxies (upstream)`},
	} {
		_, err := Parse([]byte(redirectsConfig(tc.routes)), "routes.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\nerror %v\nwant it to contain %q", tc.routes, err, tc.want)
		}
	}
}
