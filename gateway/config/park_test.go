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
	if runtime.GOOS == "linux" {
		if cfg.Server.IdleParkAfter != DefaultIdleParkAfter {
			t.Fatalf("default %v, want %v", cfg.Server.IdleParkAfter, DefaultIdleParkAfter)
		}
		if !strings.Contains(string(cfg.Redacted()), "idle_park_after: 5s") {
			t.Fatalf("the effective configuration does not show the default park delay:\n%s", cfg.Redacted())
		}
		// Left out, it yields to the settings it must be shorter than; written out, 0 is off.
		for _, server := range []string{"{idle_park_after: 0s}", "{idle_timeout: 5s}", "{write_and_wait: 5s}", "{idle_timeout: 4s, write_and_wait: 1s}"} {
			cfg, err := Parse([]byte("server: "+server+"\n"+base), "routes.yaml")
			if err != nil {
				t.Fatalf("server %s: %v", server, err)
			}
			if cfg.Server.IdleParkAfter != 0 {
				t.Errorf("server %s: idle_park_after %v, want 0 (off)", server, cfg.Server.IdleParkAfter)
			}
			if strings.Contains(string(cfg.Redacted()), "idle_park_after") {
				t.Errorf("server %s: the effective configuration shows idle_park_after while it is off", server)
			}
		}
	} else if cfg.Server.IdleParkAfter != 0 {
		t.Fatalf("default on %s: %v, want 0 (off: parking needs Linux)", runtime.GOOS, cfg.Server.IdleParkAfter)
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
