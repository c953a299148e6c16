package config

import (
	"strings"
	"testing"
)

// h2c is cleartext: TLS settings or https:// targets with it would be silently ignored, so the
// loader refuses them on the protocol field.
func TestH2CWithTLSIsRefused(t *testing.T) {
	for name, up := range map[string]string{
		"https target": `{protocol: h2c, targets: ["https://10.0.0.1:8443"]}`,
		"tls section":  `{protocol: h2c, targets: ["10.0.0.1:8443"], tls: {server_name: svc.internal}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("upstreams:\n  app: "+up+"\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"), "routes.yaml")
			if err == nil || !strings.Contains(err.Error(), "upstreams.app.protocol") || !strings.Contains(err.Error(), "use protocol h2") {
				t.Fatalf("err = %v, want upstreams.app.protocol refused", err)
			}
		})
	}
	if _, err := Parse([]byte("upstreams:\n  app: {protocol: h2, targets: [\"https://10.0.0.1:8443\"], tls: {server_name: svc.internal}}\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"), "routes.yaml"); err != nil {
		t.Fatalf("h2 with TLS settings: %v", err)
	}
}
