// Package peerconftest is what the tests of the peers' configuration generators
// (bench/nginxconf, bench/haproxyconf, bench/caddyconf) share: bench/routes.yaml loaded with its
// addresses pinned, and the comparison with a golden file.
package peerconftest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

// benchEnv pins the addresses bench/routes.yaml reads from the environment, so the generated
// files are the same on every machine.
func benchEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"BENCH_LISTEN":     ":18080",
		"BENCH_ADMIN":      "127.0.0.1:19901",
		"BENCH_UPSTREAM_1": "127.0.0.1:18001",
		"BENCH_UPSTREAM_2": "127.0.0.1:18002",
		"BENCH_PRODUCTS_1": "127.0.0.1:18003",
		"BENCH_PRODUCTS_2": "127.0.0.1:18004",
	}[name]
	return v, ok
}

// LoadBenchConfig is bench/routes.yaml with its addresses pinned.
func LoadBenchConfig(t testing.TB) *config.Config {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(), "bench", "routes.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseWithEnv(data, path, benchEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Golden compares got with testdata/name of the test's package, rewriting the file first when
// update is set (the package's -update flag).
func Golden(t testing.TB, got []byte, name string, update bool) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		wd, _ := os.Getwd()
		t.Errorf("generated config differs from %s (go test ./bench/%s -update):\n%s", golden, filepath.Base(wd), got)
	}
}
