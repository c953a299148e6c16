package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testEnv is the environment every golden test sees, so results do not depend on the machine.
func testEnv(name string) (string, bool) {
	env := map[string]string{"ADMIN_TOKEN": "s3cret-s3cret-s3cret"}
	v, ok := env[name]
	return v, ok
}

// onThisPlatform is an effective configuration written on Linux (golden files, the docs) as
// this system prints it: the default park delay (server.idle_park_after) exists only on Linux.
// Rewrite golden files (-update) on Linux.
func onThisPlatform(linux string) string {
	if runtime.GOOS == "linux" {
		return linux
	}
	return strings.Replace(linux, "  idle_park_after: 5s\n", "", 1)
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if onThisPlatform(string(want)) != string(got) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestValidConfigsGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := ParseWithEnv(data, filepath.Base(f), testEnv)
			if err != nil {
				t.Fatalf("valid config rejected:\n%v", err)
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", cfg.Redacted())
		})
	}
}

func TestInvalidConfigsGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseWithEnv(data, filepath.Base(f), testEnv)
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want *ErrorList", err)
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", []byte(err.Error()+"\n"))
		})
	}
}

// TestRedactedRoundTrips holds that the effective configuration the admin API shows parses back
// to the same configuration, so a config fetched from /config can be edited and PUT back.
func TestRedactedRoundTrips(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			first, err := ParseWithEnv(data, f, testEnv)
			if err != nil {
				t.Fatal(err)
			}
			// Redaction is the one intended loss: a user puts the environment reference back.
			rendered := []byte(strings.ReplaceAll(string(first.Redacted()), "'[redacted]'", "${ADMIN_TOKEN}"))
			second, err := ParseWithEnv(rendered, "rendered", testEnv)
			if err != nil {
				t.Fatalf("rendered config does not parse:\n%v\n%s", err, rendered)
			}
			if got, want := second.Redacted(), first.Redacted(); string(got) != string(want) {
				t.Errorf("round trip changed the config:\n--- first\n%s\n--- second\n%s", want, got)
			}
			if first.Digest() != second.Digest() {
				t.Errorf("digest changed across a round trip: %s then %s", first.Digest(), second.Digest())
			}
		})
	}
}

// FuzzParse: the loader never panics, and whatever it accepts renders to YAML that loads back to
// the same effective configuration.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("upstreams: {a: {targets: [\"h:1\"]}}\nroutes: [{name: r, match: {path: /x}, upstream: a, websocket: true}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseWithEnv(data, "fuzz.yaml", testEnv)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		rendered := []byte(strings.ReplaceAll(string(cfg.Redacted()), "'[redacted]'", "s3cret-s3cret-s3cret"))
		again, err := ParseWithEnv(rendered, "rendered.yaml", testEnv)
		if err != nil {
			t.Fatalf("accepted config renders to one that does not load:\n%v\n%s", err, rendered)
		}
		if string(again.Redacted()) != string(cfg.Redacted()) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", cfg.Redacted(), again.Redacted())
		}
	})
}

// TestParseUpdateKeepsRedactedSecrets: a configuration fetched from GET /config (secrets shown
// as "[redacted]") keeps the running secrets when it is sent back; a new value replaces them.
func TestParseUpdateKeepsRedactedSecrets(t *testing.T) {
	src := `
admin: {listen: "0.0.0.0:9901", token: "admin-token-0123456789"}
redis: {addrs: ["127.0.0.1:6379"], password: "redis-pass"}
consul: {address: "127.0.0.1:8500", token: "consul-token"}
upstreams: {app: {targets: ["127.0.0.1:1"]}}
routes: [{name: a, match: {path_prefix: /}, upstream: app}]
`
	running, err := Parse([]byte(src), "running.yaml")
	if err != nil {
		t.Fatal(err)
	}
	shown := running.Redacted()
	if strings.Contains(string(shown), "admin-token") || strings.Contains(string(shown), "redis-pass") || strings.Contains(string(shown), "consul-token") {
		t.Fatalf("a secret leaked into the rendering:\n%s", shown)
	}
	back, err := ParseUpdate(shown, "put.yaml", running)
	if err != nil {
		t.Fatal(err)
	}
	if back.Admin.Token != running.Admin.Token || back.Redis.Password != running.Redis.Password || back.Consul.Token != running.Consul.Token {
		t.Fatal("a redacted secret did not keep its running value")
	}
	changed, err := ParseUpdate([]byte(strings.Replace(string(shown), "token: '[redacted]'", "token: new-admin-token-0123456", 1)), "put.yaml", running)
	if err != nil {
		t.Fatal(err)
	}
	if changed.Admin.Token != "new-admin-token-0123456" || changed.Consul.Token != "consul-token" {
		t.Fatalf("tokens after an edit: admin %q, consul %q", changed.Admin.Token, changed.Consul.Token)
	}
}
