package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
)

// ALPN protocols the TLS listeners advertise: h2 first where the listener serves HTTP/2 (the
// server's order decides), then http/1.1.
const (
	ProtoH2     = "h2"
	ProtoHTTP11 = "http/1.1"
)

// TLSSettings is one compiled TLS configuration: the certificates read and checked, the client
// CA pool loaded. Built when a configuration is applied; published with TLS.Store.
type TLSSettings struct {
	Config *tls.Config
	// Certificates are what the file source loaded, for metrics.
	Certificates []*Certificate
}

// CompileTLS reads the certificate and CA files of t. An error names the file and the reason;
// nothing changes for the running listener until the caller stores the result. nextProtos are
// offered in ALPN before http/1.1 (ProtoH2 on a listener serving HTTP/2).
func CompileTLS(t *config.TLS, now time.Time, nextProtos ...string) (*TLSSettings, error) {
	files, err := LoadFiles(t.Certificates, now)
	if err != nil {
		return nil, err
	}
	var pool *x509.CertPool
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client_ca %s: %w", t.ClientCA, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca %s: no PEM certificate in it", t.ClientCA)
		}
	}
	return &TLSSettings{Config: ServerConfig(t, files, pool, nextProtos), Certificates: files.Certificates()}, nil
}

// tls12Suites are the TLS 1.2 suites offered: forward-secret AEAD only (Mozilla's
// "intermediate" set, Go's order). TLS 1.3 suites are not configurable in Go and are all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig is the one place a listener's tls.Config is built. nextProtos come before
// http/1.1 in ALPN preference (a listener serving HTTP/2 passes ProtoH2). Curves are Go's defaults (X25519MLKEM768,
// X25519, P-256, P-384).
func ServerConfig(t *config.TLS, certs CertificateSource, clientCAs *x509.CertPool, nextProtos []string) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tls12Suites,
		GetCertificate: certs.GetCertificate,
		NextProtos:     append(append([]string(nil), nextProtos...), ProtoHTTP11),
		ClientCAs:      clientCAs,
	}
	if t.MinVersion == config.TLSVersion13 {
		c.MinVersion = tls.VersionTLS13
	}
	switch t.ClientAuth {
	case config.ClientAuthOptional:
		c.ClientAuth = tls.VerifyClientCertIfGiven
	case config.ClientAuthRequired:
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// TLS is a listener's TLS termination. Its settings are swapped atomically on reload; new
// handshakes use the new ones, established connections are untouched. Session tickets are
// encrypted with keys of the TLS value's own base config, which Go rotates every 24 hours
// (tickets are accepted for 7 days), so resumption survives certificate reloads.
type TLS struct {
	current atomic.Pointer[TLSSettings]
	base    *tls.Config
	stats   *Stats
}

// NewTLS returns a TLS termination serving s, counting into stats.
func NewTLS(s *TLSSettings, stats *Stats) *TLS {
	t := &TLS{stats: stats}
	t.current.Store(s)
	t.base = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.current.Load().Config, nil
		},
	}
	return t
}

// Config is the base configuration to hand to tls.NewListener (or tls.Server): it picks the
// settings in use at each handshake.
func (t *TLS) Config() *tls.Config { return t.base }

// Store publishes new settings.
func (t *TLS) Store(s *TLSSettings) { t.current.Store(s) }

// Load returns the settings in use.
func (t *TLS) Load() *TLSSettings { return t.current.Load() }

// Listener wraps ln: every accepted connection is a *Conn speaking TLS.
func (t *TLS) Listener(ln net.Listener) net.Listener { return &tlsListener{Listener: ln, t: t} }

type tlsListener struct {
	net.Listener
	t *TLS
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: tls.Server(c, l.t.base), stats: l.t.stats}, nil
}

// Conn is a server-side TLS connection that counts its handshake and keeps the verified client
// certificate's subject. fasthttp calls Handshake before serving (and Read would do it anyway);
// both run on the connection's one goroutine.
type Conn struct {
	*tls.Conn
	stats     *Stats
	handshook bool
	subject   []byte
}

// Handshake runs the TLS handshake once and records its outcome.
func (c *Conn) Handshake() error {
	if c.handshook {
		return c.Conn.Handshake()
	}
	c.handshook = true
	err := c.Conn.Handshake()
	if err != nil {
		c.stats.handshakeFailed(classify(err))
		return err
	}
	c.stats.Handshakes.Add(1)
	if st := c.Conn.ConnectionState(); len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		c.subject = []byte(st.VerifiedChains[0][0].Subject.String())
	}
	return nil
}

// Read completes the handshake first when nobody asked for it.
func (c *Conn) Read(b []byte) (int, error) {
	if !c.handshook {
		if err := c.Handshake(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

// VerifiedClientSubject is the subject of the client certificate verified against client_ca
// (RFC 2253 form, e.g. "CN=svc-a,O=Example"), or nil. Valid for the connection's life.
func (c *Conn) VerifiedClientSubject() []byte { return c.subject }

// classify names why a handshake failed. crypto/tls has no typed errors for most of these, so
// its messages are matched; anything unknown is "other".
func classify(err error) Reason {
	var rec tls.RecordHeaderError
	var op *net.OpError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &rec):
		return ReasonNotTLS
	case errors.As(err, &op) && op.Op == "remote error":
		return ReasonClientAlert
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return ReasonClosed
	case contains(msg, "unsupported versions"), contains(msg, "protocol version"):
		return ReasonProtocolVersion
	case contains(msg, "no cipher suite"), contains(msg, "no ECDHE curve"), contains(msg, "no mutually supported"):
		return ReasonNoSharedCipher
	case contains(msg, "client didn't provide a certificate"), contains(msg, "failed to verify certificate"), contains(msg, "certificate required"):
		return ReasonClientCertificate
	}
	return ReasonOther
}
