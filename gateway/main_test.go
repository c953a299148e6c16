package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

var gatewayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-bin")
	if err != nil {
		panic(err)
	}
	gatewayBin = filepath.Join(dir, "gateway")
	if out, err := exec.Command("go", "build", "-o", gatewayBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the gateway: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// slowUpstream answers after delay with the request path.
func slowUpstream(t *testing.T, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		fmt.Fprint(w, "done "+r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

type process struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan error
	addr   string
	admin  string
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func writeConfig(t *testing.T, cfg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func startProcess(t *testing.T, configPath, addr, admin string) *process {
	t.Helper()
	p := &process{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1), addr: addr, admin: admin}
	p.cmd = exec.Command(gatewayBin, "-config", configPath)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("gateway stdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		}
	})
	if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
		t.Fatalf("gateway did not start: %v\n%s", err, p.stderr)
	}
	return p
}

func baseConfig(addr, admin, upstream string, grace string) string {
	return fmt.Sprintf(`
server: {listen: "%s", shutdown_grace: %s}
admin: {listen: "%s"}
access_log: {enabled: true, output: stdout}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, addr, grace, admin, upstream)
}

// gatedUpstream answers with the request path once release is called; arrived receives one
// value per request as it reaches the upstream.
func gatedUpstream(t *testing.T) (addr string, arrived <-chan struct{}, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan struct{}, 64)
	gate := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		<-gate
		fmt.Fprint(w, "done "+r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() {
		open()
		_ = srv.Close()
	})
	return ln.Addr().String(), in, open
}

// TestSIGTERMFinishesInFlightRequests: requests running when SIGTERM arrives complete; new
// connections are refused; the process exits 0. Each step waits for its condition (the requests
// at the upstream, the listener closed), never for time to pass.
func TestSIGTERMFinishesInFlightRequests(t *testing.T) {
	up, arrived, release := gatedUpstream(t)
	addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := startProcess(t, writeConfig(t, baseConfig(addr, admin, up, "10s")), addr, admin)

	const n = 6
	results := make(chan string, n)
	for i := range n {
		go func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/req%d", addr, i))
			if err != nil {
				results <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
	}
	for i := range n {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d requests reached the upstream", i, n)
		}
	}
	// All six are in flight, held at the upstream until release.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	closed := false
	for deadline := time.Now().Add(10 * time.Second); !closed && time.Now().Before(deadline); {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			closed = true
			break
		}
		c.Close()
		runtime.Gosched()
	}
	if !closed {
		t.Error("the gateway still accepts connections after SIGTERM")
	}
	release()
	for range n {
		if r := <-results; !strings.HasPrefix(r, "200 done /req") {
			t.Errorf("in-flight request: %s", r)
		}
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not exit after SIGTERM")
	}
}

// TestSIGHUPReloadsAndAccessLog: SIGHUP re-reads the file; every request is one JSON access log
// line with the documented fields.
func TestSIGHUPReloadsAndAccessLog(t *testing.T) {
	up := slowUpstream(t, 0)
	addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	path := writeConfig(t, baseConfig(addr, admin, up, "2s"))
	p := startProcess(t, path, addr, admin)

	resp, err := http.Get("http://" + addr + "/hello?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var line map[string]any
	deadline := time.Now().Add(3 * time.Second)
	for line == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		sc := bufio.NewScanner(strings.NewReader(p.stdout.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
				line = m
			}
		}
	}
	if line == nil {
		t.Fatalf("no access log line on stdout:\n%s", p.stdout)
	}
	for _, f := range []string{"time", "request_id", "client_ip", "method", "path", "route", "target", "status", "bytes_in", "bytes_out", "duration_ms", "upstream_ms"} {
		if _, ok := line[f]; !ok {
			t.Errorf("access log line lacks %q: %v", f, line)
		}
	}
	if line["path"] != "/hello" || line["query"] != "x=1" || line["status"] != float64(200) || line["route"] != "app" || line["target"] != up {
		t.Errorf("access log line %v", line)
	}

	// Add a route and send SIGHUP.
	cfg := baseConfig(addr, admin, up, "2s") + "  - {name: other, match: {path: /other}, upstream: app, headers: {response: {set: {X-Route: other}}}}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	var got string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && got != "other"; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/other")
		if err == nil {
			got = resp.Header.Get("X-Route")
			resp.Body.Close()
		}
	}
	if got != "other" {
		t.Fatal("SIGHUP did not apply the new configuration")
	}
}

// TestMetricsPassPromtool scrapes a running gateway and runs `promtool check metrics` on it.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool")
	up := slowUpstream(t, 0)
	addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	startProcess(t, writeConfig(t, baseConfig(addr, admin, up, "2s")), addr, admin)
	for _, path := range []string{"/a", "/b", "/health"} {
		if resp, err := http.Get("http://" + addr + path); err == nil {
			resp.Body.Close()
		}
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`archway_requests_total{code="200",method="GET",protocol="HTTP/1.1",route="app"} 2`,
		`archway_request_duration_seconds_bucket{route="app",le="+Inf"} 2`,
		`archway_upstream_requests_total{target="` + up + `",upstream="app"} 2`,
		`archway_upstream_in_flight{target="` + up + `",upstream="app"} 0`,
		`archway_config_reloads_total{result="success",source="start"} 1`,
		`archway_build_info{`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every archway_* family the gateway exports is documented in docs/metrics.md.
	docs, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, ok := strings.CutPrefix(line, "# TYPE ")
		if !ok {
			continue
		}
		name = strings.Fields(name)[0]
		if strings.HasPrefix(name, "archway_") && !strings.Contains(string(docs), "`"+name+"`") {
			t.Errorf("metric %s is not documented in docs/metrics.md", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestValidateCommand(t *testing.T) {
	good := writeConfig(t, baseConfig("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:1", "1s"))
	out, err := exec.Command(gatewayBin, "validate", "-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid (1 upstreams, 1 routes") {
		t.Fatalf("validate good: %v\n%s", err, out)
	}
	bad := writeConfig(t, "upstreams: {app: {targets: []}}\nroutes:\n  - {name: x, match: {path_prefix: /}, upstream: ap}\n")
	out, err = exec.Command(gatewayBin, "validate", "-config", bad).CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Fatalf("validate bad: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"routes.yaml:1:28: upstreams.app.targets: at least one target is required",
		`routes.yaml:3:50: routes[0].upstream: undefined upstream "ap" (did you mean "app"?)`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	// The gateway refuses to start on an invalid file.
	out, err = exec.Command(gatewayBin, "-config", bad).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "undefined upstream") {
		t.Fatalf("start on an invalid file: %v\n%s", err, out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestAdminAPIDocExamples runs every shell example of docs/admin-api.md against a running
// gateway with an admin token.
func TestAdminAPIDocExamples(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	data, err := os.ReadFile(filepath.Join("..", "docs", "admin-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	up := slowUpstream(t, 0)
	addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	const token = "doc-example-admin-token-0123"
	cfg := strings.Replace(baseConfig(addr, admin, up, "2s"), `admin: {listen: "`+admin+`"}`,
		`admin: {listen: "`+admin+`", token: "${ARCHWAY_ADMIN_TOKEN}"}`, 1)
	path := writeConfig(t, cfg)
	p := &process{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(gatewayBin, "-config", path)
	p.cmd.Env = append(os.Environ(), "ARCHWAY_ADMIN_TOKEN="+token)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	if err := testenv.WaitTCP(admin, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(data), "```sh\n")[1:]
	if len(blocks) < 8 {
		t.Fatalf("found %d shell examples", len(blocks))
	}
	for i, b := range blocks {
		script := b[:strings.Index(b, "```")]
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = append(os.Environ(), "ADMIN=http://"+admin, "GW=http://"+addr, "TOKEN="+token, "ARCHWAY_ADMIN_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("example %d failed: %v\n%s\n%s", i+1, err, script, out)
			continue
		}
		switch {
		case strings.Contains(script, "dry_run=true") && !strings.Contains(string(out), `"dry_run": true`):
			t.Errorf("dry run example printed %s", out)
		case strings.Contains(script, "%{http_code}") && strings.TrimSpace(string(out)) != "401":
			t.Errorf("unauthorised example printed %q, want 401", out)
		case strings.Contains(script, "/upstreams") && !strings.Contains(string(out), `"health": "healthy"`):
			t.Errorf("/upstreams example printed %s", out)
		}
	}
}
