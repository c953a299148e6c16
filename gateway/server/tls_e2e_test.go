package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// edgeGateway is a gateway serving every configured listener on real sockets.
type edgeGateway struct {
	*server.Gateway
	reg *prometheus.Registry
}

func startEdgeGateway(t testing.TB, yaml string) *edgeGateway {
	t.Helper()
	cfg := mustParse(t, yaml)
	reg := prometheus.NewRegistry()
	opts := server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg}
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &edgeGateway{Gateway: gw, reg: reg}
}

// counter sums the samples of a metric whose labels include want.
func (g *edgeGateway) counter(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	families, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// pki is a CA with the certificates the TLS tests serve and present.
type pki struct {
	dir               string
	ca                *listenertest.CA
	shop, api, client listenertest.Pair
}

func newPKI(t testing.TB) *pki {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "archway-test")
	return &pki{
		dir:    dir,
		ca:     ca,
		shop:   ca.Issue(t, "shop", listenertest.Options{}, "shop.test"),
		api:    ca.Issue(t, "api", listenertest.Options{}, "api.test", "*.api.test"),
		client: ca.Issue(t, "client", listenertest.Options{Client: true, Organization: "Archway Test"}, "svc-orders"),
	}
}

func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.RequireBinary(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// TestTLSListenersWithRealClients serves a plain listener that redirects, a TLS listener with
// two certificates and a TLS listener requiring client certificates, and talks to them with
// curl and openssl s_client.
func TestTLSListenersWithRealClients(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	testenv.RequireBinary(t, "openssl")
	p := newPKI(t)
	up := startUpstream(t, "app", nil)
	ports := testenv.FreePorts(t, 3)
	plain, secure, mtls := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	gw := startEdgeGateway(t, fmt.Sprintf(`
server:
  listeners:
    - {name: http, addr: "%s", redirect_https: true}
    - name: https
      addr: "%s"
      tls:
        certificates:
          - {cert: %s, key: %s}
          - {cert: %s, key: %s}
        hsts: "max-age=31536000; includeSubDomains"
    - name: internal
      addr: "%s"
      tls:
        certificates: [{cert: %s, key: %s}]
        client_auth: required
        client_ca: %s
        client_cert_header: X-Client-Subject
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
  - {name: internal-only, match: {path_prefix: /internal, listeners: [internal]}, upstream: app}
  - {name: moved, match: {path: /moved}, redirect: {to: "$scheme://$http_host/new", status: 301}}
`, plain, secure, p.shop.CertFile, p.shop.KeyFile, p.api.CertFile, p.api.KeyFile,
		mtls, p.shop.CertFile, p.shop.KeyFile, p.ca.CertFile, up.Addr))

	resolve := func(addr string) []string {
		return []string{"--resolve", "shop.test:" + portOf(addr) + ":127.0.0.1", "--resolve", "api.test:" + portOf(addr) + ":127.0.0.1"}
	}
	curl := func(args ...string) (string, error) {
		return run(t, "curl", append([]string{"-sS", "--max-time", "20", "--cacert", p.ca.CertFile}, args...)...)
	}

	t.Run("curl over HTTPS", func(t *testing.T) {
		// --http1.1: the listener offers h2 first (see h2_curl_e2e_test.go for HTTP/2).
		out, err := curl(append(resolve(secure), "--http1.1", "-D", "-", "https://shop.test:"+portOf(secure)+"/products?x=1")...)
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "Strict-Transport-Security: max-age=31536000; includeSubDomains") {
			t.Errorf("response:\n%s", out)
		}
		seen := up.last(t)
		if got := strings.Join(seen.Headers["X-Forwarded-Proto"], "|"); got != "https" {
			t.Errorf("X-Forwarded-Proto = %q", got)
		}
		if got := strings.Join(seen.Headers["Forwarded"], "|"); got != "for=127.0.0.1;proto=https" {
			t.Errorf("Forwarded = %q", got)
		}
	})

	t.Run("$scheme in a redirect is https on a TLS listener", func(t *testing.T) {
		out, err := curl(append(resolve(secure), "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "https://shop.test:"+portOf(secure)+"/moved")...)
		if want := "301 https://shop.test:" + portOf(secure) + "/new"; err != nil || out != want {
			t.Errorf("got %q (%v), want %q", out, err, want)
		}
	})

	t.Run("plain listener redirects to HTTPS and curl -L follows", func(t *testing.T) {
		out, err := curl(append(resolve(plain), "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://shop.test:"+portOf(plain)+"/a/b?c=1")...)
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		if want := "308 https://shop.test:" + portOf(secure) + "/a/b?c=1"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
		out, err = curl(append(append(resolve(plain), "--resolve", "shop.test:"+portOf(secure)+":127.0.0.1"),
			"-L", "-o", "/dev/null", "-w", "%{http_code} %{url_effective}", "http://shop.test:"+portOf(plain)+"/a/b?c=1")...)
		if err != nil || out != "200 https://shop.test:"+portOf(secure)+"/a/b?c=1" {
			t.Errorf("curl -L: %q %v", out, err)
		}
		if !strings.HasPrefix(up.last(t).URI, "/a/b?c=1") {
			t.Errorf("upstream got %q", up.last(t).URI)
		}
	})

	t.Run("SNI picks the certificate, no SNI gets the default", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-servername", "api.test"}, "/CN=api.test"},
			{[]string{"-servername", "v2.api.test"}, "/CN=api.test"},
			{[]string{"-servername", "shop.test"}, "/CN=shop.test"},
			{[]string{"-noservername"}, "/CN=shop.test"},
		} {
			out, err := sClient(t, secure, append(tc.args, "-CAfile", p.ca.CertFile, "-nameopt", "compat")...)
			if err != nil {
				t.Fatalf("s_client %v: %v\n%s", tc.args, err, out)
			}
			if !strings.Contains(out, "subject="+tc.want) || !strings.Contains(out, "Verify return code: 0 (ok)") {
				t.Errorf("s_client %v: want subject %s, verified; got:\n%s", tc.args, tc.want, out)
			}
		}
	})

	t.Run("ALPN h2 first, then http/1.1", func(t *testing.T) {
		for offer, want := range map[string]string{"http/1.1,h2": "h2", "http/1.1": "http/1.1"} {
			out, err := sClient(t, secure, "-servername", "shop.test", "-alpn", offer)
			if err != nil || !strings.Contains(out, "ALPN protocol: "+want) {
				t.Errorf("ALPN offering %s: %v\n%s", offer, err, out)
			}
		}
	})

	t.Run("TLS 1.0 and 1.1 refused", func(t *testing.T) {
		before := gw.counter(t, "archway_tls_handshake_errors_total", map[string]string{"listener": "https", "reason": "protocol_version"})
		for _, v := range []string{"-tls1", "-tls1_1"} {
			// SECLEVEL=0 lets this OpenSSL offer the old versions at all; the gateway must refuse.
			out, err := sClient(t, secure, v, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "shop.test")
			if err == nil || strings.Contains(out, "Cipher is ECDHE") {
				t.Errorf("%s handshake succeeded:\n%s", v, out)
			}
		}
		after := gw.counter(t, "archway_tls_handshake_errors_total", map[string]string{"listener": "https", "reason": "protocol_version"})
		if after-before != 2 {
			t.Errorf("protocol_version handshake errors went from %v to %v, want two more (the server refused them)", before, after)
		}
		if out, err := sClient(t, secure, "-tls1_2", "-servername", "shop.test"); err != nil {
			t.Errorf("TLS 1.2: %v\n%s", err, out)
		}
	})

	t.Run("mTLS: required certificate, verified subject forwarded, forged header stripped", func(t *testing.T) {
		url := "https://shop.test:" + portOf(mtls) + "/internal/x"
		if out, err := curl(append(resolve(mtls), "-H", "X-Client-Subject: CN=admin", url)...); err == nil {
			t.Fatalf("request without a client certificate succeeded:\n%s", out)
		}
		out, err := curl(append(resolve(mtls), "--cert", p.client.CertFile, "--key", p.client.KeyFile,
			"-H", "X-Client-Subject: CN=admin", "-o", "/dev/null", "-w", "%{http_code}", url)...)
		if err != nil || out != "200" {
			t.Fatalf("with a client certificate: %q %v", out, err)
		}
		if got := strings.Join(up.last(t).Headers["X-Client-Subject"], "|"); got != "CN=svc-orders,O=Archway Test" {
			t.Errorf("X-Client-Subject upstream = %q, want only the verified subject", got)
		}
		if n := gw.counter(t, "archway_tls_handshake_errors_total", map[string]string{"listener": "internal", "reason": "client_certificate"}); n < 1 {
			t.Errorf("client_certificate handshake errors = %v", n)
		}
	})

	t.Run("route limited to a listener", func(t *testing.T) {
		out, err := curl(append(resolve(secure), "-o", "/dev/null", "-w", "%{http_code}", "https://shop.test:"+portOf(secure)+"/internal/x")...)
		if err != nil || out != "200" { // the catch-all route serves it on this listener
			t.Fatalf("%q %v", out, err)
		}
		if got := up.last(t).URI; got != "/internal/x" {
			t.Errorf("upstream got %q", got)
		}
	})

	t.Run("certificate expiry exported", func(t *testing.T) {
		got := gw.counter(t, "archway_tls_certificate_expiry_seconds", map[string]string{"name": "api.test"})
		if want := float64(p.api.Cert.NotAfter.Unix()); got != want {
			t.Errorf("expiry of api.test = %v, want %v", got, want)
		}
		if n := gw.counter(t, "archway_tls_handshakes_total", map[string]string{"listener": "https"}); n < 5 {
			t.Errorf("handshakes on https = %v", n)
		}
	})
}

// sClient runs openssl s_client against addr, sending nothing and closing.
func sClient(t testing.TB, addr string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.RequireBinary(t, "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"s_client", "-connect", addr}, args...)...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCertificateRotationUnderLoad replaces the certificate files while clients open new
// connections without pause: no request fails, new connections get the new certificate; then a
// broken certificate is refused and the new one keeps serving.
func TestCertificateRotationUnderLoad(t *testing.T) {
	defer server.SetCertificateWatchInterval(20 * time.Millisecond)()
	p := newPKI(t)
	up := startUpstream(t, "app", nil)
	addr := testenv.FreeAddr(t)
	gw := startEdgeGateway(t, fmt.Sprintf(`
server:
  listeners:
    - addr: "%s"
      tls: {certificates: [{cert: %s, key: %s}]}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, addr, p.shop.CertFile, p.shop.KeyFile, up.Addr))

	oldSerial, newSerial := p.shop.Cert.SerialNumber.String(), ""
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		served     = map[string]int{} // serial → requests
		firstErr   error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool, ServerName: "shop.test"}, DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("https://" + addr + "/")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					if firstErr == nil {
						firstErr = fmt.Errorf("%v %v", err, resp)
					}
				} else {
					ok.Add(1)
					served[resp.TLS.PeerCertificates[0].SerialNumber.String()]++
				}
				mu.Unlock()
			}
		})
	}
	servedCount := func(serial string) int { mu.Lock(); defer mu.Unlock(); return served[serial] }
	waitUntil(t, "requests on the old certificate", func() bool { return servedCount(oldSerial) >= 20 })

	renewed := p.ca.Issue(t, "shop", listenertest.Options{}, "shop.test") // same files, renamed into place
	newSerial = renewed.Cert.SerialNumber.String()
	waitUntil(t, "the renewed certificate served", func() bool { return servedCount(newSerial) >= 20 })

	// A broken certificate: refused with the file named; the renewed one keeps serving.
	if err := os.WriteFile(p.shop.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the broken certificate refused", func() bool {
		r := gw.LastReload()
		return !r.OK && r.Source == "certificates" && strings.Contains(r.Error, p.shop.CertFile)
	})
	after := servedCount(newSerial)
	waitUntil(t, "requests after the refusal", func() bool { return servedCount(newSerial) >= after+20 })
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during rotation; first: %v", n, n+ok.Load(), firstErr)
	}
	t.Logf("%d requests: %v", ok.Load(), served)
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a guard against hanging, not a timing claim
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProxyProtocolListener: PROXY v1 and v2 from a trusted sender set the client address for
// X-Real-IP and X-Forwarded-For; a malformed header and an untrusted sender are closed and
// counted.
func TestProxyProtocolListener(t *testing.T) {
	up := startUpstream(t, "app", nil)
	trusted, untrusted := testenv.FreeAddr(t), testenv.FreeAddr(t)
	gw := startEdgeGateway(t, fmt.Sprintf(`
server:
  listeners:
    - {name: lb, addr: "%s", proxy_protocol: {trusted_proxies: [127.0.0.0/8]}}
    - {name: elsewhere, addr: "%s", proxy_protocol: {trusted_proxies: [192.0.2.0/24]}}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, trusted, untrusted, up.Addr))

	request := "GET /x HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
	send := func(addr string, preface []byte) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(append(preface, request...)); err != nil {
			return "", err
		}
		b, err := io.ReadAll(bufio.NewReader(c))
		return string(b), err
	}
	v1 := []byte("PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n")
	v2hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443})
	v2, err := v2hdr.Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, client string
		preface      []byte
	}{
		{"v1", "203.0.113.7", v1},
		{"v2", "2001:db8::7", v2},
	} {
		out, err := send(trusted, tc.preface)
		if err != nil || !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("%s: %v\n%s", tc.name, err, out)
		}
		seen := up.last(t)
		if got := strings.Join(seen.Headers["X-Real-Ip"], "|"); got != tc.client {
			t.Errorf("%s: X-Real-IP = %q, want %s", tc.name, got, tc.client)
		}
		if got := strings.Join(seen.Headers["X-Forwarded-For"], "|"); got != tc.client {
			t.Errorf("%s: X-Forwarded-For = %q, want %s", tc.name, got, tc.client)
		}
	}
	before := up.count()
	for _, tc := range []struct {
		name, addr, reason string
		preface            []byte
	}{
		{"no header", trusted, "malformed", nil},
		{"malformed header", trusted, "malformed", []byte("PROXY TCP4 not-an-address\r\n")},
		{"untrusted sender", untrusted, "untrusted", v1},
	} {
		listenerName := map[string]string{trusted: "lb", untrusted: "elsewhere"}[tc.addr]
		prev := gw.counter(t, "archway_proxy_protocol_rejected_total", map[string]string{"listener": listenerName, "reason": tc.reason})
		out, _ := send(tc.addr, tc.preface)
		if out != "" {
			t.Errorf("%s: got an answer:\n%s", tc.name, out)
		}
		waitUntil(t, tc.name+" counted", func() bool {
			return gw.counter(t, "archway_proxy_protocol_rejected_total", map[string]string{"listener": listenerName, "reason": tc.reason}) == prev+1
		})
	}
	if up.count() != before {
		t.Errorf("a refused connection reached the upstream")
	}
}

// TestListenerReloads: a new address needs a restart; a certificate that cannot be served is
// refused with its file and reason, and the running one stays.
func TestListenerReloads(t *testing.T) {
	p := newPKI(t)
	up := startUpstream(t, "app", nil)
	addr := testenv.FreeAddr(t)
	conf := func(addr, cert, key string) string {
		return fmt.Sprintf(`
server:
  listeners:
    - addr: "%s"
      tls: {certificates: [{cert: %s, key: %s}]}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, addr, cert, key, up.Addr)
	}
	gw := startEdgeGateway(t, conf(addr, p.shop.CertFile, p.shop.KeyFile))
	served := func() string {
		// Only which certificate is served matters here, not whether it covers the name.
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "api.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "shop.test" {
		t.Fatalf("served %s", got)
	}

	_, err := gw.Apply(mustParse(t, conf(testenv.FreeAddr(t), p.shop.CertFile, p.shop.KeyFile)), "api")
	if err == nil || !strings.Contains(err.Error(), "server.listeners") || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("new address: %v", err)
	}
	expired := p.ca.Issue(t, "expired", listenertest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, "api.test")
	_, err = gw.Apply(mustParse(t, conf(addr, expired.CertFile, expired.KeyFile)), "api")
	if err == nil || !strings.Contains(err.Error(), expired.CertFile) || !strings.Contains(err.Error(), "expired") ||
		!strings.Contains(err.Error(), "server.listeners[0].tls") {
		t.Errorf("expired certificate: %v", err)
	}
	_, err = gw.Apply(mustParse(t, conf(addr, p.api.CertFile, p.shop.KeyFile)), "api")
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	if got := served(); got != "shop.test" {
		t.Errorf("after refused reloads served %s, want the running shop.test", got)
	}
	if _, err := gw.Apply(mustParse(t, conf(addr, p.api.CertFile, p.api.KeyFile)), "api"); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "api.test" {
		t.Errorf("after a good reload served %s", got)
	}
}
