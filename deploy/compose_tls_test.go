package deploy

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeServesHTTPS: each gateway container serves HTTP on 80, redirecting to HTTPS on 443,
// both published; the certificate it serves lies in ./ssl, mounted read-only; it may bind those
// ports as its non-root user; and replica 1 takes the host's 80 and 443, as the original nginx did.
func TestComposeServesHTTPS(t *testing.T) {
	p := composeProject(t)
	ssl := filepath.Join(root(), "ssl")
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if binaryOf(s) != "gateway" {
			continue
		}
		cfg := gatewayConfig(t, s)
		published := map[int]string{}
		for _, port := range s.Ports {
			if port.HostIP == "" {
				published[int(port.Target)] = port.Published
			}
		}
		var plain, secure int
		for _, l := range cfg.Server.Listeners {
			port := portOf(t, name+" listener "+l.Name, l.Addr)
			if _, ok := published[port]; !ok {
				t.Errorf("%s: listener %s on :%d is not published on every host address", name, l.Name, port)
			}
			if l.TLS == nil {
				plain++
				if !l.RedirectHTTPS || port != 80 {
					t.Errorf("%s: plain listener %s on :%d, redirect_https %t; want :80 redirecting", name, l.Name, port, l.RedirectHTTPS)
				}
				continue
			}
			secure++
			if port != 443 {
				t.Errorf("%s: TLS listener on :%d; the redirect names no port, so it must be 443", name, port)
			}
			if l.TLS.HSTS == "" {
				t.Errorf("%s: the TLS listener sends no Strict-Transport-Security", name)
			}
			for _, c := range l.TLS.Certificates {
				for _, f := range []string{c.Cert, c.Key} {
					if host := hostPath(s, f); host == "" || filepath.Dir(host) != ssl {
						t.Errorf("%s: %s is not in ./ssl mounted read-only (found %q)", name, f, host)
					}
				}
			}
		}
		if plain != 1 || secure != 1 {
			t.Errorf("%s: %d plain and %d TLS listeners, want one of each", name, plain, secure)
		}
		if s.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" {
			t.Errorf("%s: listens on 80 and 443 as user 65532 without net.ipv4.ip_unprivileged_port_start=0", name)
		}
		if name == "archway-1" && (published[80] != "80" || published[443] != "443") {
			t.Errorf("archway-1 publishes 80 as %q and 443 as %q, want the host's 80 and 443", published[80], published[443])
		}
	}
	if _, err := os.Stat(filepath.Join(ssl, "README.md")); err != nil {
		t.Errorf("./ssl has no README saying what goes there: %v", err)
	}
}

// hostPath is the host file behind a path in a container's read-only bind mounts, or "".
func hostPath(s types.ServiceConfig, path string) string {
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind || !v.ReadOnly {
			continue
		}
		if rel, err := filepath.Rel(v.Target, path); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join(v.Source, rel)
		}
	}
	return ""
}

// TestSSLDevCertificate: `make ssl-dev` writes a CA and a certificate for localhost and
// 127.0.0.1 it signs, which a client trusting the CA accepts, and keeps them on a second run.
func TestSSLDevCertificate(t *testing.T) {
	testenv.RequireBinary(t, "openssl")
	mk := testenv.RequireBinary(t, "make")
	dir := t.TempDir()
	run := func() string {
		cmd := exec.Command(mk, "-s", "ssl-dev", "SSL_DIR="+dir)
		cmd.Dir = root()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make ssl-dev: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", name, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v, mode %v; the CA key stays private", err, st.Mode().Perm())
	}
	if out := run(); !strings.Contains(out, "keeping them") {
		t.Errorf("a second run replaced the certificate: %s", out)
	}
}
