package config

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// TLS terminates HTTPS on a listener (or the admin API). The certificate files are read when a
// configuration is applied, on every reload and when they change on disk; checking them (the
// files exist, parse, match their keys and have not expired) happens then, not here, so that
// `gateway validate` works on a machine without the certificates.
type TLS struct {
	// Certificates are served by SNI: a client asking for a name gets the certificate whose
	// names (SANs, wildcards included) cover it; a client sending no name, or one no certificate
	// covers, gets the first.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ClientAuth asks for client certificates: none, optional (verified when sent) or required.
	ClientAuth string `yaml:"client_auth"`
	// ClientCA is the PEM file of the CAs client certificates must chain to.
	ClientCA string `yaml:"client_ca,omitempty"`
	// ClientCertHeader carries the verified client certificate's subject upstream; every copy a
	// client sent is removed first.
	ClientCertHeader string `yaml:"client_cert_header,omitempty"`
	// HSTS is the Strict-Transport-Security value added to responses on this listener that
	// lack one; empty sends none.
	HSTS string `yaml:"hsts,omitempty"`
	// ACME obtains and renews certificates automatically; they are served next to the files.
	ACME *ACME `yaml:"acme,omitempty"`
}

// Certificate is a PEM certificate chain and its private key.
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// TLS versions and client authentication modes.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"

	ClientAuthNone     = "none"
	ClientAuthOptional = "optional"
	ClientAuthRequired = "required"

	DefaultTLSMinVersion = TLSVersion12
	DefaultClientAuth    = ClientAuthNone
)

var (
	tlsVersions = []string{TLSVersion12, TLSVersion13}
	clientAuths = []string{ClientAuthNone, ClientAuthOptional, ClientAuthRequired}
)

func (c *Config) applyTLSDefaults(t *TLS) {
	setDefault(&t.MinVersion, DefaultTLSMinVersion)
	setDefault(&t.ClientAuth, DefaultClientAuth)
	if t.ClientCertHeader != "" {
		t.ClientCertHeader = http.CanonicalHeaderKey(t.ClientCertHeader)
	}
	if t.ACME != nil {
		c.applyACMEDefaults(t.ACME)
	}
}

func (t *TLS) resolvePaths(abs func(string) string) {
	for i := range t.Certificates {
		t.Certificates[i].Cert = abs(t.Certificates[i].Cert)
		t.Certificates[i].Key = abs(t.Certificates[i].Key)
	}
	t.ClientCA = abs(t.ClientCA)
	if t.ACME != nil {
		t.ACME.resolvePaths(abs)
	}
}

func (v *validator) tls(p string, t *TLS) {
	if len(t.Certificates) == 0 && t.ACME == nil {
		v.errorf(p+".certificates", "at least one certificate (cert and key files) is required, or acme")
	}
	if t.ACME != nil {
		v.acme(p+".acme", t.ACME)
	}
	for i, c := range t.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", p, i)
		if c.Cert == "" {
			v.errorf(cp+".cert", "required: the PEM certificate chain file")
		}
		if c.Key == "" {
			v.errorf(cp+".key", "required: the PEM private key file")
		}
	}
	if !slices.Contains(tlsVersions, t.MinVersion) {
		v.errorf(p+".min_version", "must be 1.2 or 1.3, got %q (TLS 1.0 and 1.1 are not offered)", t.MinVersion)
	}
	if !slices.Contains(clientAuths, t.ClientAuth) {
		v.errorf(p+".client_auth", "must be none, optional or required, got %q%s", t.ClientAuth, suggest(t.ClientAuth, clientAuths))
	}
	if t.ClientAuth != ClientAuthNone && t.ClientCA == "" {
		v.errorf(p+".client_ca", "required with client_auth %s: the CAs client certificates are verified against", t.ClientAuth)
	}
	if t.ClientAuth == ClientAuthNone && t.ClientCA != "" {
		v.errorf(p+".client_ca", "has no effect with client_auth none")
	}
	if h := t.ClientCertHeader; h != "" {
		if !validHeaderName(h) {
			v.errorf(p+".client_cert_header", "invalid header name %q", h)
		} else if slices.Contains(hopByHop, h) {
			v.errorf(p+".client_cert_header", "%s is a hop-by-hop header", h)
		}
		if t.ClientAuth == ClientAuthNone {
			v.errorf(p+".client_cert_header", "needs client_auth optional or required")
		}
	}
	if t.HSTS != "" {
		if !strings.HasPrefix(strings.ToLower(t.HSTS), "max-age=") || fieldValueProblem(t.HSTS) != "" {
			v.errorf(p+".hsts", "must be a Strict-Transport-Security value starting with max-age= (e.g. \"max-age=31536000; includeSubDomains\"), got %q", t.HSTS)
		}
	}
}
