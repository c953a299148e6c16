package config

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestWriteAndWait(t *testing.T) {
	base := "upstreams: {app: {targets: [\"127.0.0.1:3000\"]}}\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"
	cfg, err := Parse([]byte(base), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.WriteAndWait != 0 {
		t.Fatalf("default %v, want 0 (off)", cfg.Server.WriteAndWait)
	}
	if strings.Contains(string(cfg.Redacted()), "write_and_wait") {
		t.Fatal("the effective configuration shows write_and_wait while it is off")
	}
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return
	}
	cfg, err = Parse([]byte("server: {write_and_wait: 20ms}\n"+base), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.WriteAndWait.D() != 20*time.Millisecond {
		t.Fatalf("parsed %v", cfg.Server.WriteAndWait)
	}
	for _, tc := range []struct{ server, want string }{
		{"{write_and_wait: 500us}", "server.write_and_wait: must be 0 (off) or at least 1ms, got 500µs"},
		{"{write_and_wait: 90s}", "must be shorter than server.idle_timeout (1m30s)"},
		{"{idle_park_after: 1s, write_and_wait: 1s}", "must be shorter than server.idle_park_after (1s)"},
		{"{write_and_wait: -1s}", "negative"},
		{"{write_and_wait: 1}", "has no unit"},
	} {
		_, err := Parse([]byte("server: "+tc.server+"\n"+base), "routes.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "routes.yaml:1") {
			t.Errorf("server %s: %v, want an error naming the file, line and %q", tc.server, err, tc.want)
		}
	}
}
