package listener_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener"
	"github.com/archway-gateway/archway/gateway/listener/listenertest"
)

func TestLoadFilesRefusesWhatCannotBeServed(t *testing.T) {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "test")
	good := ca.Issue(t, "good", listenertest.Options{}, "shop.test")
	other := ca.Issue(t, "other", listenertest.Options{}, "other.test")
	expired := ca.Issue(t, "expired", listenertest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, "old.test")
	future := ca.Issue(t, "future", listenertest.Options{NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}, "new.test")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pair config.Certificate
		want []string // in the error
	}{
		{"missing cert", config.Certificate{Cert: filepath.Join(dir, "nope.pem"), Key: good.KeyFile}, []string{"nope.pem", "no such file"}},
		{"missing key", config.Certificate{Cert: good.CertFile, Key: filepath.Join(dir, "nokey.pem")}, []string{"nokey.pem", "no such file"}},
		{"mismatched key", config.Certificate{Cert: good.CertFile, Key: other.KeyFile}, []string{good.CertFile, other.KeyFile, "does not match"}},
		{"expired", config.Certificate{Cert: expired.CertFile, Key: expired.KeyFile}, []string{expired.CertFile, "expired on"}},
		{"not yet valid", config.Certificate{Cert: future.CertFile, Key: future.KeyFile}, []string{future.CertFile, "not valid before"}},
		{"not PEM", config.Certificate{Cert: garbage, Key: good.KeyFile}, []string{garbage}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := listener.LoadFiles([]config.Certificate{tc.pair}, time.Now())
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestGetCertificateBySNI(t *testing.T) {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "test")
	def := ca.Issue(t, "default", listenertest.Options{}, "shop.test")
	api := ca.Issue(t, "api", listenertest.Options{}, "api.shop.test")
	wild := ca.Issue(t, "wild", listenertest.Options{}, "*.cdn.test", "cdn.test")
	fc, err := listener.LoadFiles([]config.Certificate{
		{Cert: def.CertFile, Key: def.KeyFile}, {Cert: api.CertFile, Key: api.KeyFile}, {Cert: wild.CertFile, Key: wild.KeyFile},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sni, want string }{
		{"api.shop.test", "api.shop.test"},
		{"API.Shop.Test.", "api.shop.test"},
		{"img.cdn.test", "*.cdn.test"},
		{"cdn.test", "*.cdn.test"},
		{"a.b.cdn.test", "shop.test"}, // a wildcard covers one label
		{"unknown.test", "shop.test"},
		{"", "shop.test"},
	} {
		hello := &tls.ClientHelloInfo{ServerName: tc.sni, SupportedVersions: []uint16{tls.VersionTLS13}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
		c, err := fc.GetCertificate(hello)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Leaf.DNSNames[0]; got != tc.want {
			t.Errorf("SNI %q got the certificate for %q, want %q", tc.sni, got, tc.want)
		}
	}
}
