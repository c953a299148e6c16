package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/valyala/fasthttp"
)

// tlsBackend is a real fasthttp server behind crypto/tls on a loopback port.
type tlsBackend struct {
	*backend
	handshakes atomic.Int64 // completed handshakes
	resumed    atomic.Int64 // of which resumed a session
}

// startTLSBackend serves pair; with clientCAs set it requires a client certificate from them.
func startTLSBackend(t testing.TB, pair listenertest.Pair, clientCAs *x509.CertPool, h func(ctx *fasthttp.RequestCtx), tune ...func(*tls.Config)) *tlsBackend {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	b := &tlsBackend{}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			b.handshakes.Add(1)
			if cs.DidResume {
				b.resumed.Add(1)
			}
			return nil
		}}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	for _, f := range tune {
		f(cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &backend{addr: ln.Addr().String(), ln: ln, handler: h}
	be.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { be.handler(ctx) }, ReadTimeout: 5 * time.Second}
	go func() { _ = be.srv.Serve(tls.NewListener(countingListener{ln, &be.conns}, cfg)) }()
	t.Cleanup(func() { _ = be.srv.Shutdown() })
	b.backend = be
	return b
}

// testPKI is a CA, a server certificate for "backend.test" and a client certificate.
type testPKI struct {
	dir            string
	ca             *listenertest.CA
	server, client listenertest.Pair
}

func newTestPKI(t testing.TB) *testPKI {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "upstreams")
	return &testPKI{
		dir: dir, ca: ca,
		server: ca.Issue(t, "backend", listenertest.Options{}, "backend.test"),
		client: ca.Issue(t, "gateway", listenertest.Options{Client: true}, "archway-gateway"),
	}
}

func tlsSettings(t testing.TB, c *config.UpstreamTLS) Settings {
	t.Helper()
	if c.MinVersion == "" {
		c.MinVersion = config.TLSVersion12
	}
	base, key, err := compileTLS(c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := testSettings()
	s.TLS, s.tlsKey = base, key
	return s
}

func TestTLSTargetReusesConnectionsAndResumesSessions(t *testing.T) {
	p := newTestPKI(t)
	b := startTLSBackend(t, p.server, nil, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("tls:" + ctx.TLSConnectionState().ServerName)
	})
	tg := newTarget("app", b.addr, 1, tlsSettings(t, &config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "backend.test"}))
	for range 5 {
		resp, err := get(t, tg, "/")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Body()); got != "tls:backend.test" {
			t.Fatalf("body %q: the request did not arrive over TLS with SNI backend.test", got)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("5 requests opened %d TLS connections, want 1 kept alive", n)
	}
	// New connections to the same target resume the session instead of a full handshake.
	for range 3 {
		x := newRoundTrip(2 * time.Second)
		x.Fresh = true
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("/")
		req.Header.SetHost("backend.test")
		resp := &fasthttp.Response{}
		if err := tg.Do(req, resp, x); err != nil {
			t.Fatal(err)
		}
		fasthttp.ReleaseRequest(req)
	}
	if h, r := b.handshakes.Load(), b.resumed.Load(); h != 4 || r != 3 {
		t.Fatalf("%d handshakes, %d resumed; want 4 and 3 (every new connection resumes)", h, r)
	}
}

func TestTLSHandshakeFailuresNeverSendTheRequest(t *testing.T) {
	p := newTestPKI(t)
	other := listenertest.NewCA(t, t.TempDir(), "someone-else")
	b := startTLSBackend(t, p.server, nil, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("must not be reached") },
		func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	for _, tc := range []struct {
		name string
		c    config.UpstreamTLS
		want string
	}{
		{"wrong CA", config.UpstreamTLS{CAFile: other.CertFile, ServerName: "backend.test"}, "certificate signed by unknown authority"},
		{"wrong name", config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "payments.test"}, "not payments.test"},
		{"target's IP not in the certificate", config.UpstreamTLS{CAFile: p.ca.CertFile}, "127.0.0.1"},
		{"min_version 1.3 against a TLS 1.2 target", config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "backend.test", MinVersion: "1.3"}, "protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget("app", b.addr, 1, tlsSettings(t, &tc.c))
			_, err := get(t, tg, "/")
			if kindOf(err) != KindTLS {
				t.Fatalf("error %v (kind %s), want kind tls", err, kindOf(err))
			}
			var e *Error
			if !errors.As(err, &e) || !e.NotSent() {
				t.Fatal("a failed handshake must count as not sent (another target may take the request)")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say why (%q)", err, tc.want)
			}
			if s := tg.Stats(); s.Failures != 1 {
				t.Fatalf("failures %d: a failed handshake counts toward max_fails", s.Failures)
			}
		})
	}
}

func TestTLSClientCertificateForUpstreamsThatRequireOne(t *testing.T) {
	p := newTestPKI(t)
	var served atomic.Int64
	b := startTLSBackend(t, p.server, p.ca.Pool, func(ctx *fasthttp.RequestCtx) {
		served.Add(1)
		ctx.SetBodyString(ctx.TLSConnectionState().PeerCertificates[0].Subject.CommonName)
	})
	// Over TLS 1.3 the client's handshake completes before the server has checked the client's
	// certificate: the refusal shows as the connection closing instead of an answer.
	without := newTarget("app", b.addr, 1, tlsSettings(t, &config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "backend.test"}))
	if _, err := get(t, without, "/"); err == nil || served.Load() != 0 {
		t.Fatalf("a target requiring a client certificate served a request without one (error %v)", err)
	} else if !strings.Contains(err.Error(), "asked for a client certificate and none is configured") {
		t.Fatalf("error %q does not say the target wanted a client certificate", err)
	}
	with := newTarget("app", b.addr, 1, tlsSettings(t, &config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "backend.test",
		CertFile: p.client.CertFile, KeyFile: p.client.KeyFile}))
	resp, err := get(t, with, "/")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Body()); got != "archway-gateway" {
		t.Fatalf("the target saw client certificate %q", got)
	}
}

// TestTLSIdleCheckSeesTheSocket: a TLS connection keeps its socket for the idle check, an open
// idle one is not taken for closed (the TLS 1.3 session tickets were read with the first
// response), and one the target closed is.
func TestTLSIdleCheckSeesTheSocket(t *testing.T) {
	p := newTestPKI(t)
	b := startTLSBackend(t, p.server, nil, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(kilobyte) })
	tg := newTarget("app", b.addr, 1, tlsSettings(t, &config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "backend.test"}))
	for range 3 {
		if _, err := get(t, tg, "/"); err != nil {
			t.Fatal(err)
		}
	}
	pc := tg.pool.popIdle(time.Now().UnixNano())
	if pc == nil || pc.fd < 0 {
		t.Fatal("no idle TLS connection with a socket to check")
	}
	if idleConnDead(pc.fd) {
		t.Fatal("an open idle TLS connection was taken for closed")
	}
	tg.pool.release(pc, true, time.Now().UnixNano())
	_ = b.srv.Shutdown() // closes idle connections
	waitFor(t, "the closed connection to show", func() bool {
		pc := tg.pool.popIdle(time.Now().UnixNano())
		if pc == nil {
			return true
		}
		dead := idleConnDead(pc.fd)
		tg.pool.release(pc, true, time.Now().UnixNano())
		return dead
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTLSConfigRefusesBadFilesNamingTheField(t *testing.T) {
	p := newTestPKI(t)
	expired := p.ca.Issue(t, "expired", listenertest.Options{Client: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, "old")
	notPEM := filepath.Join(p.dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(p.dir, "missing.pem")
	for _, tc := range []struct {
		name  string
		c     config.UpstreamTLS
		field string
		want  string
	}{
		{"missing CA", config.UpstreamTLS{CAFile: missing}, "ca_file", "no such file"},
		{"CA not PEM", config.UpstreamTLS{CAFile: notPEM}, "ca_file", "no PEM certificate"},
		{"missing cert", config.UpstreamTLS{CertFile: missing, KeyFile: p.client.KeyFile}, "cert_file", "no such file"},
		{"missing key", config.UpstreamTLS{CertFile: p.client.CertFile, KeyFile: missing}, "key_file", "no such file"},
		{"key of another certificate", config.UpstreamTLS{CertFile: p.client.CertFile, KeyFile: p.server.KeyFile}, "cert_file", "private key does not match"},
		{"expired client certificate", config.UpstreamTLS{CertFile: expired.CertFile, KeyFile: expired.KeyFile}, "cert_file", "expired on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TLSConfig(&tc.c, time.Now())
			var fe *TLSFileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a *TLSFileError", err)
			}
			if fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("field %q, error %q; want field %q and %q", fe.Field, err, tc.field, tc.want)
			}
		})
	}
}

// TestRegistryKeepsTLSTargetsUntilTheirFilesChange: a reload with the same TLS files keeps the
// target and its warm connections; a rotated CA makes a new target (the old one drains).
func TestRegistryKeepsTLSTargetsUntilTheirFilesChange(t *testing.T) {
	p := newTestPKI(t)
	yaml := `
upstreams:
  app:
    targets: ["https://127.0.0.1:1001"]
    tls: {ca_file: ` + p.ca.CertFile + `, server_name: backend.test}
routes: [{name: r, match: {path_prefix: /}, upstream: app}]
`
	build := func(r *Registry) *Upstream {
		c, err := config.Parse([]byte(yaml), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		u, err := r.Build("app", c.Upstreams["app"], nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Commit([]*Upstream{u})
		return u
	}
	r := NewRegistry(nil, nil)
	u1 := build(r)
	if u1.Targets()[0].Addr != "127.0.0.1:1001" || u1.settings.TLS == nil {
		t.Fatalf("target %q, tls %v: https:// must become host:port with TLS on", u1.Targets()[0].Addr, u1.settings.TLS != nil)
	}
	if u2 := build(r); u2.Targets()[0] != u1.Targets()[0] {
		t.Fatal("an unchanged TLS upstream lost its target (and warm connections) on reload")
	}
	listenertest.NewCA(t, p.dir, "upstreams") // same file name, a new CA
	u3 := build(r)
	if u3.Targets()[0] == u1.Targets()[0] {
		t.Fatal("the CA file changed but the target keeps connections verified against the old one")
	}
	if u1.Targets()[0].Health(time.Now().UnixNano()) != Draining {
		t.Fatal("the target of the old CA is not draining")
	}
}
