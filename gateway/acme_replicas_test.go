package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// TestACMEReplicaProcessesShareStorage runs three gateway processes on one ACME storage
// directory, with Pebble validating on the first one's ports only (as a load balancer may send
// the CA to any replica). The first manages a.test; the other two, started together, both
// manage shop.test. One of them orders shop.test while the other waits on the lock file, and
// the first process answers that order's challenges from the shared storage, since the
// ordering process is another one. Pebble sees one order per name, and both replicas serve the
// same certificate.
func TestACMEReplicaProcessesShareStorage(t *testing.T) {
	ports := testenv.FreePorts(t, 6)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], TLSPort: ports[1]})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.RootPEM(t)) {
		t.Fatal("no Pebble root")
	}
	upstream := slowUpstream(t, 0)
	storage := filepath.Join(t.TempDir(), "acme")
	config := func(plain, secure, host string) string {
		return fmt.Sprintf(`
server:
  listeners:
    - {name: http, addr: "%s", redirect_https: true}
    - name: https
      addr: "%s"
      tls:
        acme: {hosts: [%s], directory: %s, ca_root: %s, storage: %s}
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, plain, secure, host, p.Directory, p.CARoot, storage, upstream)
	}
	first := startProcess(t, writeConfig(t, config(addr(0), addr(1), "a.test")), addr(1), "")
	waitServed(t, addr(1), "a.test", roots)

	var wg sync.WaitGroup
	for _, i := range []int{2, 4} {
		wg.Go(func() { startProcess(t, writeConfig(t, config(addr(i), addr(i+1), "shop.test")), addr(i+1), "") })
	}
	wg.Wait()
	b := waitServed(t, addr(3), "shop.test", roots)
	c := waitServed(t, addr(5), "shop.test", roots)
	if b.SerialNumber.Cmp(c.SerialNumber) != 0 {
		t.Errorf("the replicas serve different certificates: %s and %s", b.SerialNumber, c.SerialNumber)
	}
	if n := p.Orders(); n != 2 {
		t.Errorf("Pebble saw %d orders, want 2 (one per name)", n)
	}
	// The first process answered shop.test's challenge (HTTP-01 or TLS-ALPN-01, the client's
	// pick) from storage.
	answered := false
	for _, line := range strings.Split(first.stderr.String(), "\n") {
		answered = answered || strings.Contains(line, "served key authentication") && strings.Contains(line, "shop.test") && strings.Contains(line, `"distributed":true`)
	}
	if !answered {
		t.Errorf("the first process did not answer shop.test's challenge from storage:\n%s", first.stderr)
	}
}

// waitServed waits until addr serves host a certificate chaining to roots.
func waitServed(t *testing.T, addr, host string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a guard against hanging, not a timing claim
	var last error
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots})
		if err == nil {
			leaf := c.ConnectionState().PeerCertificates[0]
			c.Close()
			return leaf
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s never served %s a certificate from Pebble: %v", addr, host, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
