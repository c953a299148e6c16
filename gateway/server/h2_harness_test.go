package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/archway-gateway/archway/internal/testenv"
	"golang.org/x/net/http2"
)

// h2Gateway is a gateway with an h2c listener (prior knowledge) and a TLS listener offering h2,
// both on real sockets, and Go HTTP/2 clients for each.
type h2Gateway struct {
	*edgeGateway
	pki        *pki
	plain, tls string // addresses
	h2c, h2tls *http.Client
}

// startH2Gateway serves the server, upstreams and routes sections given (YAML, indented under
// their keys as in a routes.yaml) with an h2c listener named "h2c" and a TLS listener "h2".
// serverExtra is added under server:.
func startH2Gateway(t testing.TB, serverExtra, rest string) *h2Gateway {
	t.Helper()
	p := newPKI(t)
	ports := testenv.FreePorts(t, 2)
	plain, secure := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	gw := startEdgeGateway(t, fmt.Sprintf(`
server:
  listeners:
    - {name: h2c, addr: "%s", http2: true}
    - name: h2
      addr: "%s"
      tls:
        certificates: [{cert: %s, key: %s}]
%s
%s`, plain, secure, p.shop.CertFile, p.shop.KeyFile, serverExtra, rest))
	g := &h2Gateway{edgeGateway: gw, pki: p, plain: plain, tls: secure}
	g.h2c = h2cClient(t)
	g.h2tls = h2TLSClient(t, p.ca.CertFile)
	return g
}

// h2cClient speaks HTTP/2 with prior knowledge over cleartext TCP.
func h2cClient(t testing.TB) *http.Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// h2TLSClient speaks HTTP/2 over TLS (ALPN h2 only) to shop.test, trusting the test CA.
func h2TLSClient(t testing.TB, caFile string) *http.Client {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.test"}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// urls are the same path on both listeners: over h2c and over h2 (TLS).
func (g *h2Gateway) urls(path string) map[string]string {
	return map[string]string{"h2c": "http://" + g.plain + path, "h2": "https://" + g.tls + path}
}

func (g *h2Gateway) client(kind string) *http.Client {
	if kind == "h2c" {
		return g.h2c
	}
	return g.h2tls
}
