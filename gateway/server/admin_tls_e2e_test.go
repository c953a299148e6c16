package server_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// TestAdminTLSWithClientCertificates: with admin.tls, the admin listener (as gateway/main.go
// wraps it) speaks TLS and refuses clients without a certificate from client_ca.
func TestAdminTLSWithClientCertificates(t *testing.T) {
	p := newPKI(t)
	up := startUpstream(t, "app", nil)
	gw := startEdgeGateway(t, fmt.Sprintf(`
server:
  listeners: [{addr: "%s"}]
admin:
  listen: "127.0.0.1:0"
  tls:
    certificates: [{cert: %s, key: %s}]
    client_auth: required
    client_ca: %s
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, testenv.FreeAddr(t), p.shop.CertFile, p.shop.KeyFile, p.ca.CertFile, up.Addr))
	cfg := gw.AdminTLSConfig()
	if cfg == nil {
		t.Fatal("no admin TLS configuration")
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("admin")) }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(raw, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })

	dial := func(clientCert bool) (*http.Response, error) {
		tc := &tls.Config{RootCAs: p.ca.Pool, ServerName: "shop.test"}
		if clientCert {
			c, err := tls.LoadX509KeyPair(p.client.CertFile, p.client.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		tr := &http.Transport{TLSClientConfig: tc}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest(http.MethodGet, "https://"+raw.Addr().String()+"/config", nil)
		req.Host = "shop.test"
		return c.Do(req)
	}
	if resp, err := dial(false); err == nil {
		resp.Body.Close()
		t.Fatalf("admin answered %s without a client certificate", resp.Status)
	}
	resp, err := dial(true)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with a client certificate: %s", resp.Status)
	}
}
