package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/archway-gateway/archway/internal/testenv"
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

// h2cClient speaks HTTP/2 with prior knowledge over cleartext TCP (net/http's own HTTP/2, as
// a Go client of the gateway would use it).
func h2cClient(t testing.TB) *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
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
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tr := &http.Transport{Protocols: &protocols, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.test"}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func (g *h2Gateway) client(kind string) *http.Client {
	if kind == "h2c" {
		return g.h2c
	}
	return g.h2tls
}
