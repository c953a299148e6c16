package config

import (
	"strings"
	"testing"
)

func TestListenerValidation(t *testing.T) {
	const tail = `
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"listen and listeners", "server:\n  listen: \":80\"\n  listeners: [{addr: \":81\"}]\n", "server.listen: server.listen and server.listeners are exclusive"},
		{"duplicate address", "server:\n  listeners: [{addr: \":81\"}, {addr: \":81\", name: b}]\n", `server.listeners[1].addr: duplicate address ":81"`},
		{"redirect without TLS", "server:\n  listeners: [{addr: \":81\", redirect_https: true}]\n", "redirect_https: needs a listener with tls"},
		{"no certificates", "server:\n  listeners: [{addr: \":443\", tls: {}}]\n", "tls.certificates: at least one certificate"},
		{"TLS 1.1", "server:\n  listeners: [{addr: \":443\", tls: {certificates: [{cert: c, key: k}], min_version: \"1.1\"}}]\n", "min_version: must be 1.2 or 1.3"},
		{"client auth without CA", "server:\n  listeners: [{addr: \":443\", tls: {certificates: [{cert: c, key: k}], client_auth: required}}]\n", "client_ca: required with client_auth required"},
		{"header without client auth", "server:\n  listeners: [{addr: \":443\", tls: {certificates: [{cert: c, key: k}], client_cert_header: X-Subject}}]\n", "client_cert_header: needs client_auth"},
		{"bad HSTS", "server:\n  listeners: [{addr: \":443\", tls: {certificates: [{cert: c, key: k}], hsts: \"1 year\"}}]\n", "hsts: must be a Strict-Transport-Security value"},
		{"proxy protocol without trusted", "server:\n  listeners: [{addr: \":81\", proxy_protocol: {}}]\n", "proxy_protocol.trusted_proxies: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml+tail), "routes.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	_, err := Parse([]byte("server:\n  listeners: [{addr: \":81\", name: web}]\n"+`
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes:
  - {name: app, match: {path_prefix: /, listeners: [wbe]}, upstream: app}
`), "routes.yaml")
	if err == nil || !strings.Contains(err.Error(), `routes[0].match.listeners[0]: unknown listener "wbe"`) {
		t.Errorf("unknown listener: %v", err)
	}
	cfg, err := Parse([]byte("server:\n  listeners:\n    - {addr: \":80\", redirect_https: true}\n    - {addr: \":443\", tls: {certificates: [{cert: c.pem, key: k.pem}]}}\n"+tail), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.EffectiveListeners()
	if len(l) != 2 || l[1].Name != ":443" || l[1].TLS.MinVersion != "1.2" || l[1].TLS.ClientAuth != "none" || cfg.Server.Listen != ":80" {
		t.Errorf("defaults: %+v, listen %q", l, cfg.Server.Listen)
	}
	plain, err := Parse([]byte(tail), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if l := plain.EffectiveListeners(); len(l) != 1 || l[0].Addr != DefaultListen || l[0].TLS != nil {
		t.Errorf("server.listen alone: %+v", l)
	}
}
