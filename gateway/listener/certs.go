// Package listener turns the configured public listeners into net.Listeners: TLS termination
// with certificates chosen by SNI (from files today; the CertificateSource interface leaves room
// for an ACME source next to them), and the PROXY protocol from trusted load balancers. The
// gateway's server package owns the sockets and the fasthttp servers; this package wraps the
// accepted connections and counts what it refused.
package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
)

// CertificateSource picks the certificate for a TLS handshake. FileCertificates serves files;
// an ACME source implements the same method.
type CertificateSource interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Certificate is one loaded certificate and where it came from.
type Certificate struct {
	// Name is the certificate's first DNS name (or its subject common name): its label in
	// metrics.
	Name     string
	CertFile string
	KeyFile  string
	NotAfter time.Time
	TLS      *tls.Certificate
}

// FileCertificates are certificates read from PEM files, indexed by the names they cover.
// Immutable once loaded; safe for concurrent use.
type FileCertificates struct {
	certs    []*Certificate
	exact    map[string][]*tls.Certificate
	wildcard map[string][]*tls.Certificate // "example.com" for "*.example.com"
}

var _ CertificateSource = (*FileCertificates)(nil)

// ErrCertificate marks a certificate that cannot be served.
var ErrCertificate = errors.New("certificate")

// LoadFiles reads and checks every certificate: both files readable, the key matching the
// certificate, the certificate valid at now. The first certificate is the default, served to
// clients that send no server name or one no certificate covers.
func LoadFiles(files []config.Certificate, now time.Time) (*FileCertificates, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: none configured", ErrCertificate)
	}
	fc := &FileCertificates{exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	for _, f := range files {
		c, err := loadPair(f, now)
		if err != nil {
			return nil, err
		}
		fc.certs = append(fc.certs, c)
		for _, name := range names(c.TLS.Leaf) {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				fc.wildcard[rest] = append(fc.wildcard[rest], c.TLS)
			} else {
				fc.exact[name] = append(fc.exact[name], c.TLS)
			}
		}
	}
	return fc, nil
}

func loadPair(f config.Certificate, now time.Time) (*Certificate, error) {
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCertificate, f.Cert, err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("%w %s: key %s: %w", ErrCertificate, f.Cert, f.Key, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w %s with key %s: %w", ErrCertificate, f.Cert, f.Key, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrCertificate, f.Cert, err)
		}
		pair.Leaf = leaf
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("%w %s: expired on %s", ErrCertificate, f.Cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("%w %s: not valid before %s", ErrCertificate, f.Cert, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	ns := names(leaf)
	if len(ns) == 0 {
		return nil, fmt.Errorf("%w %s: names no host (no DNS subject alternative name or common name)", ErrCertificate, f.Cert)
	}
	return &Certificate{Name: ns[0], CertFile: f.Cert, KeyFile: f.Key, NotAfter: leaf.NotAfter, TLS: &pair}, nil
}

// names are the host names a certificate covers: its DNS SANs, or its common name when it has
// none (as clients did before SANs).
func names(leaf *x509.Certificate) []string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames
	}
	if leaf.Subject.CommonName != "" {
		return []string{leaf.Subject.CommonName}
	}
	return nil
}

// Certificates returns the loaded certificates in configuration order.
func (fc *FileCertificates) Certificates() []*Certificate { return fc.certs }

// GetCertificate implements CertificateSource: an exact name first, then a wildcard one level up,
// then the default. Among certificates for the same name (an ECDSA and an RSA one), the first the
// client supports wins.
func (fc *FileCertificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := supported(hello, fc.exact[name]); c != nil {
			return c, nil
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := supported(hello, fc.wildcard[parent]); c != nil {
				return c, nil
			}
		}
	}
	return fc.certs[0].TLS, nil
}

func supported(hello *tls.ClientHelloInfo, certs []*tls.Certificate) *tls.Certificate {
	for _, c := range certs {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return nil
}
