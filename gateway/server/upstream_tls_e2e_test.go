package server_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/fasthttp/websocket"
)

// upstreamPKI is an internal CA with the products service's certificate and the gateway's
// client certificate, and a CA nobody trusts.
type upstreamPKI struct {
	dir              string
	ca, stranger     *listenertest.CA
	products, client listenertest.Pair
}

func newUpstreamPKI(t testing.TB) *upstreamPKI {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "internal")
	return &upstreamPKI{
		dir: dir, ca: ca,
		stranger: listenertest.NewCA(t, t.TempDir(), "stranger"),
		products: ca.Issue(t, "products", listenertest.Options{}, "products.internal"),
		client:   ca.Issue(t, "gateway", listenertest.Options{Client: true}, "archway-gateway"),
	}
}

// startProductsOverTLS builds the products service and runs n instances serving HTTPS that
// require a client certificate issued by the internal CA. It returns their addresses.
func startProductsOverTLS(t *testing.T, p *upstreamPKI, n int) []string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/archway-gateway/archway/backends/products")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var addrs []string
	for i := range n {
		addr := testenv.FreeAddr(t)
		testenv.StartProcess(t, fmt.Sprintf("products-%d", i), filepath.Join(dir, "products"), []string{
			"-addr", addr, "-database-url", filepath.Join(dir, fmt.Sprintf("products-%d.db", i)),
			"-jwt-secret", strings.Repeat("s", 32),
			"-tls-cert", p.products.CertFile, "-tls-key", p.products.KeyFile, "-tls-client-ca", p.ca.CertFile,
		}, testenv.ProcessOptions{})
		if err := testenv.WaitTCP(addr, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, addr)
	}
	return addrs
}

// logBuffer collects the gateway's own log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestUpstreamTLSWithTheProductsService runs the real products service over HTTPS with client
// certificates required, twice, behind a least_conn upstream with active health checks, and
// checks what a wrong CA, a missing client certificate, a broken CA file on reload and
// insecure_skip_verify do.
func TestUpstreamTLSWithTheProductsService(t *testing.T) {
	p := newUpstreamPKI(t)
	products := startProductsOverTLS(t, p, 2)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	logs := &logBuffer{}
	yaml := func(caFile, extra string) string {
		return fmt.Sprintf(`
access_log: {output: %[1]q, flush: 50ms}
upstreams:
  products:
    balance: least_conn
    targets: ["https://%[2]s", "https://%[3]s"]
    tls: {ca_file: %[4]q, server_name: products.internal, cert_file: %[5]q, key_file: %[6]q}
    health_check: {path: /health, interval: 200ms, timeout: 200ms, healthy: 1, unhealthy: 1}
  untrusted:
    targets: ["https://%[2]s"]
    tls: {ca_file: %[7]q, server_name: products.internal, cert_file: %[5]q, key_file: %[6]q}
  untrusted-checked:
    targets: ["https://%[2]s"]
    tls: {ca_file: %[7]q, server_name: products.internal, cert_file: %[5]q, key_file: %[6]q}
    health_check: {path: /health, interval: 200ms, timeout: 200ms, healthy: 1, unhealthy: 1}
  no-client-cert:
    targets: ["https://%[2]s"]
    tls: {ca_file: %[4]q, server_name: products.internal}
%[8]s
routes:
  - {name: products, match: {path_prefix: /api/products}, strip_prefix: /api, upstream: products}
  - {name: untrusted, match: {path_prefix: /untrusted}, strip_prefix: /untrusted, upstream: untrusted}
  - {name: no-client-cert, match: {path_prefix: /no-client-cert}, strip_prefix: /no-client-cert, upstream: no-client-cert}
`, accessLog, products[0], products[1], caFile, p.client.CertFile, p.client.KeyFile, p.stranger.CertFile, extra)
	}
	gw := startGateway(t, yaml(p.ca.CertFile, ""), func(o *server.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})

	// Pools and least_conn over TLS: every request answered, both instances used, one kept-alive
	// connection each.
	for i := range 20 {
		r := get(t, gw.URL+"/api/products/")
		expectStatus(t, r, 200)
		var items []map[string]any
		if err := json.Unmarshal([]byte(r.Body), &items); err != nil || len(items) != 10 {
			t.Fatalf("request %d: %d products (%v): %.200s", i, len(items), err, r.Body)
		}
	}
	now := time.Now().UnixNano()
	for _, tg := range gw.Snapshot().Upstreams["products"].Targets() {
		s := tg.Stats()
		if s.Requests == 0 || s.Dials != 1 || s.Failures != 0 {
			t.Errorf("target %s: %+v; want requests on each instance over one kept-alive TLS connection", tg.Addr, s)
		}
	}
	// Active health checks over TLS: they pass against the instances, and fail (taking the
	// target out) when the certificate is not trusted.
	waitUntil(t, "health checks over TLS to pass", func() bool {
		for _, tg := range gw.Snapshot().Upstreams["products"].Targets() {
			if tg.Stats().ChecksPassed == 0 || tg.Health(now) != upstream.Healthy {
				return false
			}
		}
		return true
	})
	waitUntil(t, "health checks against an untrusted certificate to fail", func() bool {
		tg := gw.Snapshot().Upstreams["untrusted-checked"].Targets()[0]
		return tg.Health(time.Now().UnixNano()) == upstream.Unhealthy
	})

	// A certificate from a CA the upstream's ca_file does not hold: 502, nothing internal in the
	// body, and the reason in the access log.
	r := get(t, gw.URL+"/untrusted/products")
	expectStatus(t, r, 502)
	for _, leak := range []string{products[0], "127.0.0.1", "x509", "products.internal"} {
		if strings.Contains(r.Body, leak) {
			t.Errorf("the 502 body reveals %q: %s", leak, r.Body)
		}
	}
	waitUntil(t, "the access log line of the 502", func() bool {
		data, _ := os.ReadFile(accessLog)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"route":"untrusted"`) && strings.Contains(line, `"status":502`) &&
				strings.Contains(line, "tls: handshake") && strings.Contains(line, "certificate signed by unknown authority") {
				return true
			}
		}
		return false
	})
	if s := gw.Snapshot().Upstreams["untrusted"].Targets()[0].Stats(); s.Failures == 0 {
		t.Errorf("the failed handshake did not count toward max_fails: %+v", s)
	}

	// The instances require a client certificate: without one the request never reaches them.
	expectStatus(t, get(t, gw.URL+"/no-client-cert/products"), 502)
	waitUntil(t, "the access log to say a client certificate was asked for", func() bool {
		data, _ := os.ReadFile(accessLog)
		return strings.Contains(string(data), "asked for a client certificate and none is configured")
	})

	// A CA file that is not PEM is refused on reload with file, line and field; the running
	// configuration keeps serving.
	broken := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(broken, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := gw.Apply(mustParse(t, yaml(broken, "")), "test")
	if err == nil || !strings.Contains(err.Error(), "test.yaml:18:20: upstreams.no-client-cert.tls.ca_file: "+broken+": no PEM certificate in the file") {
		t.Fatalf("reload with a broken CA file: %v", err)
	}
	expectStatus(t, get(t, gw.URL+"/api/products/1"), 200)

	// insecure_skip_verify is accepted, and warned about at every load.
	insecure := `  lax:
    targets: ["https://` + products[0] + `"]
    tls: {insecure_skip_verify: true}`
	for range 2 {
		if _, err := gw.Apply(mustParse(t, yaml(p.ca.CertFile, insecure)), "test"); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "insecure_skip_verify"); n != 2 {
		t.Fatalf("%d warnings about insecure_skip_verify after two loads, want 2:\n%s", n, logs.String())
	}
}

// TestWebSocketThroughATLSUpstream: a WebSocket tunnel to an upstream that speaks only HTTPS
// (wss:// from the gateway's side), with the handshake verified against the upstream's CA.
func TestWebSocketThroughATLSUpstream(t *testing.T) {
	p := newUpstreamPKI(t)
	cert, err := tls.LoadX509KeyPair(p.products.CertFile, p.products.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.TLS.ServerName != "products.internal" {
			http.Error(w, "TLS with SNI products.internal only", http.StatusMisdirectedRequest)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte("tls:"), msg...)); err != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	gw := startGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  live: {targets: ["https://%s"], tls: {ca_file: %q, server_name: products.internal}}
routes:
  - {name: ws, match: {path_prefix: /api/ws}, strip_prefix: /api, upstream: live, websocket: true}
`, ln.Addr(), p.ca.CertFile))
	c := dialWS(t, "ws://"+gw.Addr+"/api/ws")
	for i := range 50 {
		msg := fmt.Sprintf("message %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "tls:"+msg {
			t.Fatalf("got %q, want %q", got, "tls:"+msg)
		}
	}
	if n := gw.Snapshot().Upstreams["live"].Targets()[0].Tunnels(); n != 1 {
		t.Fatalf("%d tunnels open to the target, want 1", n)
	}
}
