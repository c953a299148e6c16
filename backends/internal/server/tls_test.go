package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates into PEM files for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
	pool *x509.CertPool
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{key: key, file: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.pool.AddCert(ca.cert)
	writeTestPEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes name.pem and name-key.pem: a server certificate for 127.0.0.1, or a client one.
func (ca *testCA) issue(t *testing.T, dir, name string, client bool) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writeTestPEM(t, certFile, "CERTIFICATE", der)
	writeTestPEM(t, keyFile, "PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func writeTestPEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestListenAndServeTLS: with a certificate the service serves HTTPS only; with a client CA it
// also requires a client certificate from it.
func TestListenAndServeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	cert, key, _ := ca.issue(t, dir, "service", false)
	_, _, clientPair := ca.issue(t, dir, "gateway", true)

	serve := func(cfg Config) string {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Addr = ln.Addr().String()
		_ = ln.Close()
		cfg.Service = "test"
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		srv := New(cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.ListenAndServe(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", cfg.Addr)
			if err == nil {
				c.Close()
				return cfg.Addr
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, Certificates: certs}}}
	}

	addr := serve(Config{TLSCertFile: cert, TLSKeyFile: key})
	resp, err := client().Get("https://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /health over TLS: %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + addr + "/health"); err == nil && resp.StatusCode == 200 {
		t.Fatal("a TLS service answered plain HTTP")
	}

	addr = serve(Config{TLSCertFile: cert, TLSKeyFile: key, TLSClientCAFile: ca.file})
	if resp, err := client().Get("https://" + addr + "/health"); err == nil {
		resp.Body.Close()
		t.Fatal("a service requiring client certificates answered a client without one")
	}
	resp, err = client(clientPair).Get("https://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /health with a client certificate: %d", resp.StatusCode)
	}
}

func TestListenAndServeTLSRefusesIncompleteSettings(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	cert, key, _ := ca.issue(t, dir, "service", false)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{TLSCertFile: cert}, "both required"},
		{Config{TLSClientCAFile: ca.file}, "both required"},
		{Config{TLSCertFile: cert, TLSKeyFile: cert}, "with key " + cert},
		{Config{TLSCertFile: cert, TLSKeyFile: key, TLSClientCAFile: cert + ".missing"}, "client CA"},
		{Config{TLSCertFile: cert, TLSKeyFile: key, Consul: "127.0.0.1:8500"}, "Consul"},
	} {
		tc.cfg.Addr = "127.0.0.1:0"
		tc.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		err := New(tc.cfg).ListenAndServe(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
