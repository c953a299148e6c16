package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// TestREADMEHTTPSTour runs the HTTPS part of the README's tour as written: its openssl command
// makes the certificate, its listeners (on free ports) serve a route, and its curl commands,
// HTTPS with --cacert and plain HTTP followed to HTTPS with -L, get the upstream's answer.
func TestREADMEHTTPSTour(t *testing.T) {
	bash := testenv.RequireBinary(t, "bash")
	testenv.RequireBinary(t, "openssl")
	testenv.RequireBinary(t, "curl")
	readme, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(readme), "HTTPS is a listener with certificate files.")
	if !ok {
		t.Fatal("README.md has no HTTPS part in its tour")
	}
	blocks := regexp.MustCompile("(?s)```(sh|yaml)\n(.*?)```").FindAllStringSubmatch(tour, 3)
	if len(blocks) != 3 || blocks[0][1] != "sh" || blocks[1][1] != "yaml" || blocks[2][1] != "sh" {
		t.Fatalf("the README's HTTPS tour is not: a sh block (the certificate), a yaml block (the listeners), a sh block (the requests)")
	}
	makeCert, listeners, requests := blocks[0][2], blocks[1][2], blocks[2][2]

	dir := t.TempDir()
	shell := func(script string) string {
		t.Helper()
		cmd := exec.Command(bash, "-euo", "pipefail", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s\n%v\n%s", script, err, out)
		}
		return string(out)
	}
	shell(makeCert)

	upstream := slowUpstream(t, 0)
	ports := testenv.FreePorts(t, 3)
	plain, secure, admin := fmt.Sprintf(":%d", ports[0]), fmt.Sprintf(":%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	if !strings.Contains(listeners, `":8080"`) || !strings.Contains(listeners, `":8443"`) {
		t.Fatalf("the README's listeners are not on :8080 and :8443:\n%s", listeners)
	}
	listeners = strings.NewReplacer(`":8080"`, `"`+plain+`"`, `":8443"`, `"`+secure+`"`).Replace(listeners)
	cfg := listeners + fmt.Sprintf(`admin: {listen: %q}
access_log: {enabled: false}
upstreams:
  products: {targets: [%q]}
routes:
  - {name: products, match: {path_prefix: /api/products}, upstream: products}
`, admin, upstream)
	path := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, path, "127.0.0.1"+secure, admin)
	if err := testenv.WaitTCP("127.0.0.1"+plain, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	var curls []string
	for _, line := range strings.Split(requests, "\n") {
		if strings.HasPrefix(line, "curl ") {
			curls = append(curls, line)
		}
	}
	if len(curls) != 2 || !strings.Contains(curls[0], "--cacert") || !strings.Contains(curls[1], "-L") {
		t.Fatalf("the README's HTTPS requests are not a curl --cacert and a curl -L: %q", curls)
	}
	for _, c := range curls {
		c = strings.NewReplacer("localhost:8443", "localhost"+secure, "localhost:8080", "localhost"+plain).Replace(c)
		// -f: an error status fails the command; -w: the final URL, to see where -L ended.
		got := shell(strings.Replace(c, "curl ", "curl -sS -f -w ' %{url_effective}' ", 1))
		if want := "done /api/products https://localhost" + secure + "/api/products?limit=2"; got != want {
			t.Errorf("%s: got %q, want %q", c, got, want)
		}
	}
	resp, err := http.Get("http://localhost" + plain + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the plain listener answers /health with %d, want 200 without a redirect", resp.StatusCode)
	}
}
