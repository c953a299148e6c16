package listener_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
)

// TestTestsslFindsNothingHighOrCritical runs testssl.sh once against a TLS listener with the
// default settings (only certificates configured) and fails on any finding of severity HIGH or
// CRITICAL. Client simulation and the per-cipher listing are left out: they take minutes and
// judge nothing the protocol, cipher, server-default, header and vulnerability checks do not.
// It lives in this package, not with the other end-to-end tests in gateway/server, so its
// minutes count against a test binary of its own.
func TestTestsslFindsNothingHighOrCritical(t *testing.T) {
	bin, ok := testenv.LookBinary("testssl")
	if !ok {
		if bin, ok = testenv.LookBinary("testssl.sh"); !ok {
			testenv.Missing(t, "testssl.sh is not installed")
		}
	}
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "archway-testssl")
	cert := ca.Issue(t, "localhost", listenertest.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)}, "localhost")
	up := startUpstream(t)
	addr := testenv.FreeAddr(t)
	startGateway(t, fmt.Sprintf(`
server:
  listeners:
    - addr: "%s"
      tls: {certificates: [{cert: %s, key: %s}]}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, addr, cert.CertFile, cert.KeyFile, up))

	report := filepath.Join(dir, "testssl.json")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // minutes on a loaded machine
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--protocols", "--std", "--fs", "--server-preference", "--server-defaults", "--headers", "--vulnerable",
		"--add-ca", ca.CertFile, "--ip", "127.0.0.1", "--warnings", "off", "--quiet", "--color", "0",
		"--assume-http", "--nodns", "none", "--sneaky", "--jsonfile", report, "https://"+net.JoinHostPort("localhost", port(addr))+"/")
	out, err := cmd.CombinedOutput()
	// testssl's exit status counts findings of any severity; the report decides.
	if ctx.Err() != nil {
		t.Fatalf("testssl did not finish: %v\n%s", ctx.Err(), out)
	}
	data, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("testssl wrote no report (%v, exit %v):\n%s", rerr, err, out)
	}
	var findings []struct {
		ID, Severity, Finding string
	}
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("report: %v", err)
	}
	seen := map[string]string{}
	for _, f := range findings {
		seen[f.ID] = f.Finding
		switch f.Severity {
		case "HIGH", "CRITICAL", "FATAL":
			t.Errorf("%s %s: %s", f.Severity, f.ID, f.Finding)
		}
	}
	// The scan really looked: these findings exist only when it reached the listener.
	for _, id := range []string{"TLS1_2", "TLS1_3", "TLS1", "TLS1_1", "cert_chain_of_trust", "heartbleed", "ROBOT", "HSTS"} {
		if _, ok := seen[id]; !ok {
			t.Errorf("the report has no %s finding: the scan did not run as expected (%d findings)", id, len(findings))
		}
	}
	t.Logf("%d findings; TLS1: %s; TLS1_1: %s; TLS1_3: %s; chain of trust: %s", len(findings), seen["TLS1"], seen["TLS1_1"], seen["TLS1_3"], seen["cert_chain_of_trust"])
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startUpstream serves 200 "ok" on a loopback port and returns its address.
func startUpstream(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") }}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// startGateway serves every listener of the configuration until the test ends.
func startGateway(t testing.TB, yaml string) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lns, err := gw.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.ServeListeners(lns) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
}
