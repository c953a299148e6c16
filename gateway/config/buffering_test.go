package config

import (
	"strings"
	"testing"
)

func TestBuffering(t *testing.T) {
	load := func(buffering string) (*Config, error) {
		up := `{targets: ["127.0.0.1:3000"]}`
		if buffering != "" {
			up = `{targets: ["127.0.0.1:3000"], buffering: ` + buffering + `}`
		}
		return Parse([]byte("upstreams:\n  app: "+up+"\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"), "routes.yaml")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		in   string
		want Buffering
	}{
		{"", Buffering{Memory: DefaultBufferingMemory, MaxTempFile: DefaultBufferingMaxTempFile}},
		{"on", Buffering{Memory: DefaultBufferingMemory, MaxTempFile: DefaultBufferingMaxTempFile}},
		{"off", Buffering{Off: true, Memory: DefaultBufferingMemory, MaxTempFile: DefaultBufferingMaxTempFile}},
		{"{memory: 1MiB}", Buffering{Memory: 1 << 20, MaxTempFile: DefaultBufferingMaxTempFile}},
		{"{max_temp_file: 0}", Buffering{Memory: DefaultBufferingMemory}},
		{"{off: true}", Buffering{Off: true, Memory: DefaultBufferingMemory, MaxTempFile: DefaultBufferingMaxTempFile}},
		{"{temp_dir: " + dir + ", max_temp_file: 2GiB}", Buffering{Memory: DefaultBufferingMemory, MaxTempFile: 2 << 30, TempDir: dir}},
	} {
		cfg, err := load(tc.in)
		if err != nil {
			t.Errorf("buffering %q: %v", tc.in, err)
			continue
		}
		if got := cfg.Upstreams["app"].Buffering; got != tc.want {
			t.Errorf("buffering %q: %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"maybe", `upstreams.app.buffering: expected on, off or`},
		{"{memory: 4KiB}", "upstreams.app.buffering.memory: must be at least 64KiB"},
		{"{max_temp_file: -1}", "upstreams.app.buffering.max_temp_file"},
		{"{temp_dir: " + dir + "/missing}", "upstreams.app.buffering.temp_dir:"},
		{"{memroy: 1MiB}", "memroy"},
	} {
		_, err := load(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "routes.yaml:2") {
			t.Errorf("buffering %s: %v, want an error naming the file, line and %q", tc.in, err, tc.want)
		}
	}
}
