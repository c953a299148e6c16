package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Pebble is Let's Encrypt's test ACME server (bin/pebble, built by `make deps`) on loopback
// ports, with pebble-challtestsrv as its DNS server answering every name with 127.0.0.1. Its
// validation authority connects to HTTPPort for HTTP-01 and TLSPort for TLS-ALPN-01: the
// gateway's listeners under test.
type Pebble struct {
	// Directory is the ACME directory URL; CARoot is the PEM file of the CA that signed
	// Pebble's own HTTPS certificate (the ACME client's ca_root).
	Directory string
	CARoot    string
	// ManagementAddr serves the roots of the certificates Pebble issues (/roots/0).
	ManagementAddr string

	proc     *Process
	listen   string // Pebble's own ACME address, behind relay
	relay    *tcpRelay
	roots    *x509.CertPool // trusts Pebble's HTTPS certificate
	caPEM    []byte
	dnsProc  *Process
	dnsAddr  string
	certFile string
}

// PebbleOptions tune StartPebble. HTTPPort and TLSPort are required.
type PebbleOptions struct {
	HTTPPort, TLSPort int
	// Validity of the certificates Pebble issues; 0 keeps Pebble's 90 days.
	Validity time.Duration
}

// StartPebble starts pebble-challtestsrv and Pebble on free loopback ports and stops them when
// the test ends. Validation is immediate (PEBBLE_VA_NOSLEEP), every nonce is accepted
// (PEBBLE_WFE_NONCEREJECT=0) and authorizations are never reused (PEBBLE_AUTHZREUSE=0), so
// every order runs its challenges against the gateway.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	pebbleBin := RequireBinary(t, "pebble")
	dnsBin := RequireBinary(t, "pebble-challtestsrv")
	if opts.HTTPPort == 0 || opts.TLSPort == 0 {
		t.Fatalf("testenv: StartPebble needs HTTPPort and TLSPort")
	}
	dir := shortTempDir(t, "pebble")
	p := &Pebble{}
	p.writeServerCertificate(t, dir)

	ports := FreePorts(t, 4)
	p.dnsAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.dnsProc = StartProcess(t, "pebble-challtestsrv", dnsBin, []string{
		"-dnsserver", p.dnsAddr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
	}, ProcessOptions{})
	if err := WaitTCP(p.dnsAddr, 15*time.Second); err != nil { // the DNS server answers TCP too
		t.Fatalf("testenv: pebble-challtestsrv did not start: %v\n%s", err, trimOutput(p.dnsProc.Output()))
	}

	p.listen = fmt.Sprintf("127.0.0.1:%d", ports[1])
	p.ManagementAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	// Clients reach the ACME API through a relay the test can cut (the CA unreachable) while
	// Pebble keeps its accounts and certificates, as a real CA does through an outage.
	p.relay = &tcpRelay{addr: fmt.Sprintf("127.0.0.1:%d", ports[3]), target: p.listen}
	p.Directory = "https://" + p.relay.addr + "/dir"
	validity := uint64(opts.Validity / time.Second)
	if validity == 0 {
		validity = 90 * 24 * 3600
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           p.listen,
		"managementListenAddress": p.ManagementAddr,
		"certificate":             p.certFile,
		"privateKey":              filepath.Join(dir, "server.key"),
		"httpPort":                opts.HTTPPort,
		"tlsPort":                 opts.TLSPort,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			"default": map[string]any{"description": "test", "validityPeriod": validity},
		},
	}}
	data, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, data, 0o600); err != nil {
		t.Fatalf("testenv: pebble config: %v", err)
	}
	p.proc = StartProcess(t, "pebble", pebbleBin, []string{"-config", confFile, "-dnsserver", p.dnsAddr}, ProcessOptions{
		Env: []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0", "PEBBLE_CHAIN_LENGTH=2"},
	})
	p.waitReady(t)
	if err := p.relay.up(); err != nil {
		t.Fatalf("testenv: pebble relay: %v", err)
	}
	t.Cleanup(p.relay.down)
	return p
}

func (p *Pebble) waitReady(t testing.TB) {
	t.Helper()
	for _, addr := range []string{p.listen, p.ManagementAddr} {
		if err := WaitTCP(addr, 20*time.Second); err != nil {
			t.Fatalf("testenv: pebble did not start: %v\n%s", err, trimOutput(p.proc.Output()))
		}
	}
}

// writeServerCertificate makes the CA and the 127.0.0.1/localhost certificate Pebble serves
// its ACME and management APIs with.
func (p *Pebble) writeServerCertificate(t testing.TB, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Pebble test server CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: pebble CA: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: pebble certificate: %v", err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.CARoot = filepath.Join(dir, "ca.pem")
	p.certFile = filepath.Join(dir, "server.pem")
	for file, data := range map[string][]byte{
		p.CARoot:                         p.caPEM,
		p.certFile:                       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		filepath.Join(dir, "server.key"): pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatalf("testenv: pebble certificate: %v", err)
		}
	}
	p.roots = x509.NewCertPool()
	p.roots.AddCert(ca)
}

// RootPEM returns the root certificate that the certificates Pebble issues chain to. Pebble
// makes a new root each time it starts.
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots}}}
	resp, err := client.Get("https://" + p.ManagementAddr + "/roots/0")
	if err != nil {
		t.Fatalf("testenv: pebble roots: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: pebble roots: %d %v", resp.StatusCode, err)
	}
	return body
}

// WriteRoot writes RootPEM to a file in a temporary directory and returns its path (for curl
// --cacert and openssl -CAfile).
func (p *Pebble) WriteRoot(t testing.TB) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pebble-root-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".pem")
	if err := os.WriteFile(f, p.RootPEM(t), 0o600); err != nil {
		t.Fatalf("testenv: pebble root: %v", err)
	}
	return f
}

// Issued counts the certificates Pebble has issued since the test started it (across restarts).
func (p *Pebble) Issued() int { return strings.Count(p.proc.Output(), "Issued certificate serial") }

// Orders counts the orders clients created at Pebble (across restarts).
func (p *Pebble) Orders() int { return strings.Count(p.proc.Output(), "Added order") }

// Unreachable makes the ACME API refuse connections (and cuts those open), as a CA outage
// looks to clients; Pebble itself keeps running with its state. (Restarting Pebble would not
// do: it keeps nothing across a restart, so its accounts and certificates would be gone.)
func (p *Pebble) Unreachable() { p.relay.down() }

// Reachable opens the ACME API again after Unreachable, on the same address.
func (p *Pebble) Reachable(t testing.TB) {
	t.Helper()
	if err := p.relay.up(); err != nil {
		t.Fatalf("testenv: pebble relay: %v", err)
	}
}

// Output is what Pebble printed so far.
func (p *Pebble) Output() string { return p.proc.Output() }

// tcpRelay forwards connections from addr to target while it is up. Its goroutines end when it
// goes down (the listener and every connection are closed).
type tcpRelay struct {
	addr, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (r *tcpRelay) up() error {
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after down
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.ln, r.conns = ln, map[net.Conn]struct{}{}
	r.mu.Unlock()
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() { r.pipe(c) })
		}
	})
	return nil
}

func (r *tcpRelay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *tcpRelay) pipe(c net.Conn) {
	defer c.Close()
	if !r.track(c) {
		return
	}
	u, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	if !r.track(u) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done // either side ending ends both
}

func (r *tcpRelay) down() {
	r.mu.Lock()
	if r.ln != nil {
		_ = r.ln.Close()
	}
	for c := range r.conns {
		_ = c.Close()
	}
	r.ln, r.conns = nil, nil
	r.mu.Unlock()
	r.wg.Wait()
}
