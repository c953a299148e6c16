// Package listenertest makes real certificates for tests: a throwaway CA (ECDSA P-256) that
// issues server and client certificates into PEM files.
package listenertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority. Its certificate is in CertFile.
type CA struct {
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	CertFile string
	Pool     *x509.CertPool
	dir      string
}

var serial atomic.Int64

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewCA makes a CA whose files live in dir.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Archway Test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, CertFile: filepath.Join(dir, name+"-ca.pem"), Pool: x509.NewCertPool(), dir: dir}
	ca.Pool.AddCert(cert)
	writePEM(t, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Options adjust an issued certificate.
type Options struct {
	NotBefore, NotAfter time.Time // default: an hour ago, a day ahead
	Client              bool      // a client certificate (ExtKeyUsageClientAuth)
	Organization        string
}

// Pair is an issued certificate's files.
type Pair struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
}

// Issue writes a certificate for names (the first is also the common name) and its key to
// dir/file.pem and dir/file-key.pem.
func (ca *CA) Issue(t testing.TB, file string, o Options, names ...string) Pair {
	t.Helper()
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if o.Organization != "" {
		tmpl.Subject.Organization = []string{o.Organization}
	}
	if !o.Client {
		// Where revocation would be published, as a public CA's certificates say (scanners rate
		// a certificate without one as a finding); nothing is served there.
		tmpl.CRLDistributionPoints = []string{"http://crl.archway.test/ca.crl"}
	}
	if o.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.DNSNames = names
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := Pair{CertFile: filepath.Join(ca.dir, file+".pem"), KeyFile: filepath.Join(ca.dir, file+"-key.pem"), Cert: cert}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.KeyFile, "PRIVATE KEY", keyDER)
	writePEM(t, p.CertFile, "CERTIFICATE", der)
	return p
}

// writePEM writes through a temporary file and a rename, as certbot and Kubernetes do, so a
// reader never sees half a file.
func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
