package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// UpstreamTLS makes the gateway speak HTTPS to an upstream's targets. A target written as
// "https://host:port" turns it on with the defaults; a tls section sets it explicitly. The files
// are read when a configuration is applied (on every reload), not here, so that `gateway
// validate` works on a machine without them; a file that cannot be read or parsed refuses the
// configuration, and the running one stays.
type UpstreamTLS struct {
	// CAFile is the PEM file of the CAs the targets' certificates must chain to; empty trusts
	// the system's roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// ServerName is sent as SNI and verified against the targets' certificates; empty uses each
	// target's host (its IP address is then checked against the certificate's IP SANs and no SNI
	// is sent). Discovered targets are IP addresses: name the service here.
	ServerName string `yaml:"server_name,omitempty"`
	// CertFile and KeyFile are the client certificate presented to targets that ask for one
	// (mTLS); both or neither.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// InsecureSkipVerify accepts any certificate the targets present. It exists for test
	// setups; a warning is logged every time a configuration with it is loaded.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`

	// schemeConflicts are targets whose scheme contradicts the others' (found while defaulting,
	// reported by validation).
	schemeConflicts []string
}

// Target schemes: an upstream's targets are all http:// (or bare host:port) or all https://.
const (
	schemeHTTP  = "http://"
	schemeHTTPS = "https://"
)

// applyTLSDefaults strips the scheme of targets written as URLs, giving a port-less one its
// scheme's default port, and turns TLS on for https:// targets.
func (u *Upstream) applyTLSDefaults(name string) {
	var plain, secure []int
	for i := range u.Targets {
		t := &u.Targets[i]
		var rest, port string
		switch {
		case hasPrefixFold(t.Addr, schemeHTTPS):
			rest, port = t.Addr[len(schemeHTTPS):], "443"
			secure = append(secure, i)
		case hasPrefixFold(t.Addr, schemeHTTP):
			rest, port = t.Addr[len(schemeHTTP):], "80"
			plain = append(plain, i)
		default:
			continue
		}
		rest = strings.TrimSuffix(rest, "/") // "https://host:8443/" is still just the host
		if _, _, err := net.SplitHostPort(rest); err != nil && !strings.ContainsAny(rest, "/?#") {
			rest = net.JoinHostPort(strings.Trim(rest, "[]"), port)
		}
		t.Addr = rest
	}
	if len(secure) > 0 && u.TLS == nil {
		u.TLS = &UpstreamTLS{}
	}
	if u.TLS == nil {
		return
	}
	setDefault(&u.TLS.MinVersion, DefaultTLSMinVersion)
	for _, i := range plain {
		why := "the upstream's other targets are https://"
		if len(secure) == 0 {
			why = "the upstream has a tls section"
		}
		u.TLS.schemeConflicts = append(u.TLS.schemeConflicts,
			fmt.Sprintf("upstreams.%s.targets[%d]\x00is http:// but %s: all targets of an upstream speak the same protocol", name, i, why))
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func (c *Config) resolveUpstreamTLSPaths(abs func(string) string) {
	for _, u := range c.Upstreams {
		if t := u.TLS; t != nil {
			t.CAFile, t.CertFile, t.KeyFile = abs(t.CAFile), abs(t.CertFile), abs(t.KeyFile)
		}
	}
}

func (v *validator) upstreamTLS(p string, u *Upstream) {
	for _, t := range u.Targets {
		if strings.Contains(t.Addr, "://") {
			// targetAddr has already said the address is invalid; say why.
			v.errorf(p+".targets", "only http:// and https:// targets are supported, got %q", t.Addr)
		}
	}
	t := u.TLS
	if t == nil {
		return
	}
	for _, c := range t.schemeConflicts {
		path, msg, _ := strings.Cut(c, "\x00")
		v.errorf(path, "%s", msg)
	}
	p += ".tls"
	if !slices.Contains(tlsVersions, t.MinVersion) {
		v.errorf(p+".min_version", "must be 1.2 or 1.3, got %q (TLS 1.0 and 1.1 are not offered)", t.MinVersion)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			v.errorf(p+".cert_file", "required with key_file: the client certificate presented to the targets")
		} else {
			v.errorf(p+".key_file", "required with cert_file: the client certificate's private key")
		}
	}
	if sn := t.ServerName; sn != "" && (strings.ContainsAny(sn, " /\t\r\n") || strings.HasPrefix(sn, ".")) {
		v.errorf(p+".server_name", "must be a host name, got %q", sn)
	}
	if t.InsecureSkipVerify && (t.CAFile != "" || t.ServerName != "") {
		v.errorf(p+".insecure_skip_verify", "contradicts ca_file and server_name, which only matter when certificates are verified")
	}
}
