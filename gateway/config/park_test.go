package config

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestIdleParkAfter(t *testing.T) {
	base := "upstreams: {app: {targets: [\"127.0.0.1:3000\"]}}\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"
	cfg, err := Parse([]byte(base), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.IdleParkAfter != 0 {
		t.Fatalf("default %v, want 0 (off)", cfg.Server.IdleParkAfter)
	}
	if strings.Contains(string(cfg.Redacted()), "idle_park_after") {
		t.Fatal("the effective configuration shows idle_park_after while it is off")
	}
	if runtime.GOOS != "linux" {
		_, err := Parse([]byte("server: {idle_park_after: 1s}\n"+base), "routes.yaml")
		if err == nil || !strings.Contains(err.Error(), "needs Linux") {
			t.Fatalf("on %s: %v, want parking refused with the reason", runtime.GOOS, err)
		}
		return
	}
	cfg, err = Parse([]byte("server: {idle_park_after: 2s}\n"+base), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.IdleParkAfter.D() != 2*time.Second {
		t.Fatalf("parsed %v", cfg.Server.IdleParkAfter)
	}
	for _, tc := range []struct{ server, want string }{
		{"{idle_park_after: 10ms}", "server.idle_park_after: must be 0 (off) or at least 100ms, got 10ms"},
		{"{idle_park_after: 90s}", "must be shorter than server.idle_timeout (1m30s)"},
		{"{idle_timeout: 5s, idle_park_after: 5s}", "must be shorter than server.idle_timeout (5s)"},
		{"{idle_park_after: -1s}", "negative"},
		{"{idle_park_after: 1}", "has no unit"},
	} {
		_, err := Parse([]byte("server: "+tc.server+"\n"+base), "routes.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "routes.yaml:1") {
			t.Errorf("server %s: %v, want an error naming the file, line and %q", tc.server, err, tc.want)
		}
	}
}
