package server_test

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestAccessListOverRealSockets: an admin path limited to an office network, judged on the
// client address the gateway resolves: X-Forwarded-For counts only from a trusted proxy.
func TestAccessListOverRealSockets(t *testing.T) {
	app := startUpstream(t, "app", nil)
	const routes = `
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - name: admin
    match: {path_prefix: /admin}
    upstream: app
    access: {allow: [10.20.0.0/16], deny: [10.20.99.0/24]}
  - name: shop
    match: {path_prefix: /}
    upstream: app
`
	_, opt := withPolicies(t)
	behindProxy := startGateway(t, fmt.Sprintf("server: {trusted_proxies: [127.0.0.1]}\n"+routes, app.Addr), opt)
	_, opt2 := withPolicies(t)
	direct := startGateway(t, fmt.Sprintf(routes, app.Addr), opt2)

	for _, tc := range []struct {
		name string
		gw   *gateway
		xff  string
		path string
		want int
	}{
		{"office address through the trusted proxy", behindProxy, "10.20.1.2", "/admin/users", 200},
		{"office chain: the rightmost untrusted address decides", behindProxy, "198.51.100.1, 10.20.1.2", "/admin/users", 200},
		{"denied subnet of the office", behindProxy, "10.20.99.5", "/admin/users", 403},
		{"outside address through the trusted proxy", behindProxy, "203.0.113.9", "/admin/users", 403},
		{"spoofed office address after an outside one", behindProxy, "10.20.1.2, 203.0.113.9", "/admin/users", 403},
		{"the proxy itself is not in the office", behindProxy, "", "/admin", 403},
		{"no trusted proxy: a client's X-Forwarded-For is ignored", direct, "10.20.1.2", "/admin/users", 403},
		{"other routes are open", direct, "", "/products", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.xff != "" {
				headers = []string{"X-Forwarded-For", tc.xff}
			}
			before := app.count()
			r := get(t, tc.gw.URL+tc.path, headers...)
			expectStatus(t, r, tc.want)
			if tc.want != 403 {
				return
			}
			var body struct {
				Error     string `json:"error"`
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.Error != "access denied" || body.RequestID == "" {
				t.Errorf("403 body %q is not the gateway's JSON error", r.Body)
			}
			if app.count() != before {
				t.Error("a refused request reached the upstream")
			}
		})
	}
}
