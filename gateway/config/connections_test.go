package config

import (
	"strings"
	"testing"
)

func TestConnectionCaps(t *testing.T) {
	base := "upstreams: {app: {targets: [\"127.0.0.1:3000\"]}}\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"
	cfg, err := Parse([]byte(base), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Server; s.MaxConnections != DefaultMaxConnections || s.MaxConnectionsPerIP != DefaultMaxConnectionsPerIP {
		t.Fatalf("defaults: %d, %d", s.MaxConnections, s.MaxConnectionsPerIP)
	}
	for _, tc := range []struct{ server, want string }{
		{"{max_connections: -1}", "server.max_connections: must be at least 1"},
		{"{max_connections_per_ip: -2}", "server.max_connections_per_ip: must be 0 (no cap) or more"},
		{"{max_connections: 10, max_connections_per_ip: 11}", "must not exceed server.max_connections (10)"},
	} {
		_, err := Parse([]byte("server: "+tc.server+"\n"+base), "routes.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "routes.yaml:1") {
			t.Errorf("server %s: %v, want an error naming the file, line and %q", tc.server, err, tc.want)
		}
	}
}
