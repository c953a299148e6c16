package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// The ACME tests run the gateway against Pebble, Let's Encrypt's test CA (bin/pebble, built by
// `make deps`), whose validation authority resolves every name to 127.0.0.1 and connects to the
// gateway's own listeners for HTTP-01 and TLS-ALPN-01.

// acmeSite is what one ACME test serves: a plain and a TLS listener on fixed ports, an upstream,
// and the storage directory.
type acmeSite struct {
	plain, secure string
	storage       string
	upstream      string
}

func newACMESite(t *testing.T) *acmeSite {
	t.Helper()
	ports := testenv.FreePorts(t, 2)
	up := startUpstream(t, "app", nil)
	return &acmeSite{
		plain:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
		secure:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
		storage:  filepath.Join(t.TempDir(), "acme"),
		upstream: up.Addr,
	}
}

// config is a gateway with a redirecting plain listener and an ACME TLS listener for shop.test.
// extra is added to the acme section.
func (s *acmeSite) config(p *testenv.Pebble, extra string) string {
	return fmt.Sprintf(`
server:
  listeners:
    - {name: http, addr: "%s", redirect_https: true}
    - name: https
      addr: "%s"
      tls:
        acme:
          email: ops@shop.example.com
          hosts: [shop.test]
          directory: %s
          ca_root: %s
          storage: %s
%s
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, s.plain, s.secure, p.Directory, p.CARoot, s.storage, extra, s.upstream)
}

// acmeGateway is a gateway whose log is kept (and printed when the test fails) and that a test
// can stop before its end (to restart it).
type acmeGateway struct {
	*server.Gateway
	reg  *prometheus.Registry
	log  *syncBuffer
	stop func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startACMEGateway(t *testing.T, name, yaml string) *acmeGateway {
	t.Helper()
	cfg := mustParse(t, yaml)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	opts := server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg}
	_, withTable := withPolicies(t)
	withTable(&opts)
	gw, err := server.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := gw.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.ServeListeners(lns) }()
	var once sync.Once
	g := &acmeGateway{Gateway: gw, reg: reg, log: logs}
	g.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = gw.Shutdown(ctx)
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
			// What a stopped gateway's manager still did went to storage the test is about
			// to remove ("directory not empty").
			if n := gw.ACMEManagersRunning(); n != 0 {
				t.Errorf("%d certificate managers still running after Shutdown returned", n)
			}
		})
	}
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("--- log of gateway %s ---\n%s", name, logs.String())
		}
	})
	return g
}

func (g *acmeGateway) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	return (&edgeGateway{reg: g.reg}).counter(t, name, labels)
}

// shortRenewChecks makes the renewal loop look every 200 ms for the test's duration.
func shortRenewChecks(t *testing.T) {
	prev := listener.ACMERenewCheckInterval
	listener.ACMERenewCheckInterval = 200 * time.Millisecond
	t.Cleanup(func() { listener.ACMERenewCheckInterval = prev })
}

// servedLeaf connects to addr asking for host and returns the leaf certificate if it chains to
// roots, or the reason it does not.
func servedLeaf(addr, host string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func pool(t testing.TB, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificate in Pebble's root")
	}
	return p
}

// waitServed waits until addr serves host a certificate chaining to roots that satisfies ok.
func waitServed(t testing.TB, addr, host string, roots *x509.CertPool, what string, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	var lastErr error
	deadline := time.Now().Add(3 * time.Minute) // a guard against hanging, not a timing claim
	for {
		l, err := servedLeaf(addr, host, roots)
		if err == nil && ok(l) {
			leaf = l
			break
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s on %s (last error: %v)", what, addr, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return leaf
}

func anyCert(*x509.Certificate) bool { return true }

// checkWithRealClients fetches a page through the TLS listener with curl and runs openssl
// s_client, both trusting only Pebble's root.
func checkWithRealClients(t *testing.T, secure, rootFile string) {
	t.Helper()
	out, err := run(t, "curl", "-sS", "--max-time", "20", "--cacert", rootFile, "--resolve", "shop.test:"+portOf(secure)+":127.0.0.1",
		"-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}", "https://shop.test:"+portOf(secure)+"/hello")
	if err != nil || out != "200 0" {
		t.Errorf("curl over the ACME certificate: %q %v", out, err)
	}
	out, err = sClient(t, secure, "-servername", "shop.test", "-CAfile", rootFile, "-verify_return_error", "-verify_hostname", "shop.test")
	if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("openssl s_client: %v\n%s", err, out)
	}
}

// TestACMEObtainsWithHTTP01: the CA validates over the plain listener, which redirects every
// other request to HTTPS; the certificate then serves curl and openssl s_client.
func TestACMEObtainsWithHTTP01(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	testenv.RequireBinary(t, "openssl")
	site := newACMESite(t)
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: atoi(portOf(site.plain)), TLSPort: atoi(portOf(site.secure))})
	gw := startACMEGateway(t, "a", site.config(p, "          challenges: [http-01]"))
	roots := pool(t, p.RootPEM(t))

	leaf := waitServed(t, site.secure, "shop.test", roots, "a certificate from Pebble", anyCert)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "shop.test" {
		t.Errorf("certificate names %v", leaf.DNSNames)
	}
	if !strings.Contains(p.Output(), "Attempting to validate w/ HTTP: http://shop.test:"+portOf(site.plain)+"/.well-known/acme-challenge/") {
		t.Errorf("Pebble did not validate with http-01 on the plain listener:\n%s", p.Output())
	}
	checkWithRealClients(t, site.secure, p.WriteRoot(t))

	// Every other request on the plain listener is still redirected.
	r := rawRequest(t, site.plain, "GET /.well-known/other HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
	if r.Status != 308 || r.Headers.Get("Location") != "https://shop.test:"+portOf(site.secure)+"/.well-known/other" {
		t.Errorf("plain listener: %d %q, want 308 to HTTPS", r.Status, r.Headers.Get("Location"))
	}
	r = rawRequest(t, site.plain, "GET /.well-known/acme-challenge/unknown-token HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
	if r.Status != 200 || r.Body != "app /.well-known/acme-challenge/unknown-token" {
		// A token no manager knows is left to the routes (an upstream may run its own client).
		t.Errorf("an unknown challenge token: %d %q, want the route's answer", r.Status, r.Body)
	}
	waitMetric(t, gw, "archway_acme_certificates_total", map[string]string{"listener": "https", "event": "obtained"}, 1)
	if n := gw.metric(t, "archway_tls_certificate_expiry_seconds", map[string]string{"name": "shop.test"}); int64(n) != leaf.NotAfter.Unix() {
		t.Errorf("expiry metric %v, want %d", n, leaf.NotAfter.Unix())
	}
}

// TestACMEObtainsWithTLSALPN01: a gateway with only a TLS listener answers TLS-ALPN-01 on it.
func TestACMEObtainsWithTLSALPN01(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	testenv.RequireBinary(t, "openssl")
	site := newACMESite(t)
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: atoi(portOf(site.plain)), TLSPort: atoi(portOf(site.secure))})
	gw := startACMEGateway(t, "a", fmt.Sprintf(`
server:
  listeners:
    - name: https
      addr: "%s"
      tls:
        acme: {hosts: [shop.test], directory: %s, ca_root: %s, storage: %s, challenges: [tls-alpn-01]}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, site.secure, p.Directory, p.CARoot, site.storage, site.upstream))
	roots := pool(t, p.RootPEM(t))
	waitServed(t, site.secure, "shop.test", roots, "a certificate from Pebble", anyCert)
	if strings.Contains(p.Output(), "validate w/ HTTP") {
		t.Errorf("Pebble validated over HTTP:\n%s", p.Output())
	}
	if !strings.Contains(gw.log.String(), "challenge=tls-alpn-01") {
		t.Errorf("the gateway logged no TLS-ALPN-01 answer")
	}
	checkWithRealClients(t, site.secure, p.WriteRoot(t))
}

// TestACMERestartUsesStoredCertificate: a gateway restarted on the same storage serves the
// stored certificate without a new order.
func TestACMERestartUsesStoredCertificate(t *testing.T) {
	site := newACMESite(t)
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: atoi(portOf(site.plain)), TLSPort: atoi(portOf(site.secure))})
	roots := pool(t, p.RootPEM(t))
	first := startACMEGateway(t, "first", site.config(p, ""))
	leaf := waitServed(t, site.secure, "shop.test", roots, "a certificate from Pebble", anyCert)
	first.stop()
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders before the restart, want 1", n)
	}

	second := startACMEGateway(t, "second", site.config(p, ""))
	again := waitServed(t, site.secure, "shop.test", roots, "the stored certificate", anyCert)
	if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("serial %s after the restart, want the stored %s", again.SerialNumber, leaf.SerialNumber)
	}
	if n := p.Orders(); n != 1 {
		t.Errorf("%d orders after the restart, want 1 (the stored certificate)", n)
	}
	if n := second.metric(t, "archway_acme_certificates_total", map[string]string{"event": "obtained"}); n != 0 {
		t.Errorf("the restarted gateway counted %v certificates obtained", n)
	}
}

// TestACMEReplicasShareOneOrder: two gateways on one storage directory start together; one
// orders (holding the lock file in storage), the other waits and loads the result, so Pebble
// sees one order and both serve the same certificate. (With a storage directory each, this
// test sees two orders.) Pebble validates on the first gateway's ports only, as a load
// balancer may send it to either. Both gateways run in this test's process, where certmagic
// also keeps pending challenges in memory, so this does not isolate answering a challenge from
// storage alone.
func TestACMEReplicasShareOneOrder(t *testing.T) {
	a, b := newACMESite(t), newACMESite(t)
	b.storage = a.storage
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: atoi(portOf(a.plain)), TLSPort: atoi(portOf(a.secure))})
	roots := pool(t, p.RootPEM(t))
	var wg sync.WaitGroup
	gws := make([]*acmeGateway, 2)
	for i, s := range []*acmeSite{a, b} {
		wg.Go(func() { gws[i] = startACMEGateway(t, fmt.Sprint("replica-", i), s.config(p, "")) })
	}
	wg.Wait()
	if t.Failed() || gws[0] == nil || gws[1] == nil {
		// A replica that could not start failed the test from its goroutine, which ends only
		// that goroutine: end the test here rather than wait for a certificate nobody orders.
		t.FailNow()
	}
	la := waitServed(t, a.secure, "shop.test", roots, "replica 0's certificate", anyCert)
	lb := waitServed(t, b.secure, "shop.test", roots, "replica 1's certificate", anyCert)
	if la.SerialNumber.Cmp(lb.SerialNumber) != 0 {
		t.Errorf("replicas serve different certificates: %s and %s", la.SerialNumber, lb.SerialNumber)
	}
	if n, m := p.Orders(), p.Issued(); n != 1 || m != 1 {
		t.Errorf("Pebble saw %d orders and issued %d certificates, want 1 and 1", n, m)
	}
	obtained := gws[0].metric(t, "archway_acme_certificates_total", map[string]string{"event": "obtained"}) +
		gws[1].metric(t, "archway_acme_certificates_total", map[string]string{"event": "obtained"})
	if obtained != 1 {
		t.Errorf("replicas counted %v certificates obtained, want 1", obtained)
	}
}

// TestACMERenewalSurvivesCADown: certificates renew before expiry; with the CA unreachable a
// renewal fails, is counted and logged, and the current certificate keeps serving; with the CA
// back the next renewal (after certmagic's first back-off, one minute) succeeds.
func TestACMERenewalSurvivesCADown(t *testing.T) {
	shortRenewChecks(t)
	site := newACMESite(t)
	// One-hour certificates renewed 59m50s before expiry: a renewal is due 10 s after each issue.
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: atoi(portOf(site.plain)), TLSPort: atoi(portOf(site.secure)), Validity: time.Hour})
	roots := pool(t, p.RootPEM(t))
	gw := startACMEGateway(t, "a", site.config(p, "          renew_before: 59m50s"))
	first := waitServed(t, site.secure, "shop.test", roots, "the first certificate", anyCert)
	renewed := waitServed(t, site.secure, "shop.test", roots, "a renewed certificate", func(c *x509.Certificate) bool {
		return c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	waitMetric(t, gw, "archway_acme_certificates_total", map[string]string{"event": "renewed"}, 1)

	p.Unreachable()
	waitMetric(t, gw, "archway_acme_errors_total", map[string]string{"listener": "https", "operation": "renew"}, 1)
	still, err := servedLeaf(site.secure, "shop.test", roots)
	if err != nil {
		t.Fatalf("with the CA down the certificate in use stopped serving: %v", err)
	}
	if still.NotAfter.Before(renewed.NotAfter) {
		t.Errorf("serving an older certificate (%s) than the last renewed one (%s)", still.SerialNumber, renewed.SerialNumber)
	}
	if r := rawRequest(t, site.plain, "GET /x HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"); r.Status != 308 {
		t.Errorf("plain listener with the CA down: %d", r.Status)
	}

	failed := gw.metric(t, "archway_acme_errors_total", map[string]string{"operation": "renew"})
	p.Reachable(t)
	waitServed(t, site.secure, "shop.test", roots, "a certificate renewed once the CA is back", func(c *x509.Certificate) bool {
		return c.NotAfter.After(still.NotAfter)
	})
	if n := gw.metric(t, "archway_acme_errors_total", map[string]string{"operation": "renew"}); n < failed {
		t.Errorf("error counter went back from %v to %v", failed, n)
	}
	if !strings.Contains(gw.log.String(), "order failed") {
		t.Errorf("the failed renewal was not logged")
	}
}

// TestACMEBadConfigurationIsRefused: a bad email or no hosts is refused at load with the file,
// line and field, and a running gateway keeps its configuration.
func TestACMEBadConfigurationIsRefused(t *testing.T) {
	site := newACMESite(t)
	conf := func(acme string) string {
		return fmt.Sprintf(`
server:
  listeners:
    - {name: http, addr: "%s"}
    - name: https
      addr: "%s"
      tls:
        acme: %s
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, site.plain, site.secure, acme, site.upstream)
	}
	good := conf(fmt.Sprintf(`{hosts: [shop.test], directory: "https://127.0.0.1:1/dir", storage: %s}`, site.storage))
	gw := startACMEGateway(t, "a", good)
	before := gw.Config().Digest()
	for _, tc := range []struct{ acme, want string }{
		{`{email: "not an email", hosts: [shop.test]}`, "test.yaml:8:23: server.listeners[1].tls.acme.email: invalid email address"},
		{`{email: ops@shop.example.com, hosts: []}`, "server.listeners[1].tls.acme.hosts: at least one host name is required"},
		{`{hosts: ["*.shop.test"]}`, "server.listeners[1].tls.acme.hosts[0]: wildcard"},
		{`{hosts: [shop.test], directory: "http://ca.test/dir"}`, "server.listeners[1].tls.acme.directory: must be the https:// URL"},
		{`{hosts: [shop.test], renew_before: 0s}`, "server.listeners[1].tls.acme.renew_before: must be greater than 0"},
		{`{hosts: [shop.test], challenges: [dns-01]}`, "server.listeners[1].tls.acme.challenges[0]: must be http-01 or tls-alpn-01"},
	} {
		_, err := config.Parse([]byte(conf(tc.acme)), "test.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.acme, err, tc.want)
		}
	}
	// A CA root that cannot be read is found when the configuration is applied.
	missing := filepath.Join(t.TempDir(), "missing.pem")
	_, err := gw.Apply(mustParse(t, conf(fmt.Sprintf(`{hosts: [shop.test], directory: "https://127.0.0.1:1/dir", storage: %s, ca_root: %s}`, site.storage, missing))), "api")
	if err == nil || !strings.Contains(err.Error(), "server.listeners[1].tls.acme") || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing ca_root: %v", err)
	}
	if gw.Config().Digest() != before {
		t.Errorf("a refused configuration replaced the running one")
	}
	if _, err := os.Stat(site.storage); err != nil {
		t.Errorf("storage directory: %v", err)
	}
}

func waitMetric(t testing.TB, gw *acmeGateway, name string, labels map[string]string, atLeast float64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%s%v >= %v", name, labels, atLeast), func() bool { return gw.metric(t, name, labels) >= atLeast })
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
