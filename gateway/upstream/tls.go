package upstream

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
)

// TLSFileError is a file of an upstream's tls section that cannot be used. Field is the
// section's field that names it (ca_file, cert_file, key_file), so that the caller can point at
// the line of the configuration.
type TLSFileError struct {
	Field string
	File  string
	Err   error
}

func (e *TLSFileError) Error() string { return fmt.Sprintf("%s: %v", e.File, e.Err) }

func (e *TLSFileError) Unwrap() error { return e.Err }

// TLSConfig builds the client TLS configuration of an upstream's tls section: the CA pool (the
// system's roots without ca_file), the client certificate, the minimum version and ALPN
// http/1.1. It reads the files now; a file that cannot be read, parsed or used is a
// *TLSFileError. ServerName is left empty unless configured: TargetTLSConfig fills it in per
// target. Every transport of an upstream (the HTTP/1.1 pools, health checks, WebSocket tunnels,
// and any other protocol to the same targets) derives its configuration from this one, cloning
// it to change NextProtos.
func TLSConfig(t *config.UpstreamTLS, now time.Time) (*tls.Config, error) {
	c, _, err := compileTLS(t, now)
	return c, err
}

// compileTLS is TLSConfig plus a digest of everything the configuration was built from (the
// settings and the files' contents): a target is kept across a reload only while it is
// unchanged, so a rotated CA or client certificate reaches new connections, and the old
// target's pool drains.
func compileTLS(t *config.UpstreamTLS, now time.Time) (*tls.Config, string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %t\x00", t.ServerName, t.MinVersion, t.InsecureSkipVerify)
	c := &tls.Config{
		ServerName:         t.ServerName,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, warned at every load
	}
	if t.MinVersion == config.TLSVersion13 {
		c.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, "", &TLSFileError{Field: "ca_file", File: t.CAFile, Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", &TLSFileError{Field: "ca_file", File: t.CAFile, Err: errors.New("no PEM certificate in the file")}
		}
		c.RootCAs = pool
		h.Write(pem)
	}
	h.Write([]byte{0})
	if t.CertFile != "" {
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, "", &TLSFileError{Field: "cert_file", File: t.CertFile, Err: err}
		}
		keyPEM, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, "", &TLSFileError{Field: "key_file", File: t.KeyFile, Err: err}
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, "", &TLSFileError{Field: "cert_file", File: t.CertFile, Err: fmt.Errorf("with key %s: %w", t.KeyFile, err)}
		}
		leaf := pair.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return nil, "", &TLSFileError{Field: "cert_file", File: t.CertFile, Err: err}
			}
		}
		switch {
		case now.After(leaf.NotAfter):
			return nil, "", &TLSFileError{Field: "cert_file", File: t.CertFile, Err: fmt.Errorf("expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))}
		case now.Before(leaf.NotBefore):
			return nil, "", &TLSFileError{Field: "cert_file", File: t.CertFile, Err: fmt.Errorf("not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))}
		}
		c.Certificates = []tls.Certificate{pair}
		h.Write(certPEM)
		h.Write(keyPEM)
	}
	return c, hex.EncodeToString(h.Sum(nil)), nil
}

// TargetTLSConfig is base (from TLSConfig) for one target at addr: the target's host as the
// server name unless one is configured, and a session cache of its own, so that new
// connections to the target resume the last session instead of a full handshake.
func TargetTLSConfig(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		} else {
			c.ServerName = addr
		}
	}
	c.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
	return c
}

// sessionCacheSize bounds a target's session cache. Its key is the server name, so one target
// needs one entry; the room is for a server_name shared by targets behind one address.
const sessionCacheSize = 8
