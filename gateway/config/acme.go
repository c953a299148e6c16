package config

import (
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ACME obtains and renews a TLS listener's certificates automatically from an ACME certificate
// authority (Let's Encrypt by default). HTTP-01 challenges are answered on the plain listeners,
// TLS-ALPN-01 on this one. Certificates and the account live in storage, a directory that
// several gateways may share: a lock file there makes one of them order while the others wait
// and then load what it stored.
type ACME struct {
	// Email is the account's contact address at the CA; optional.
	Email string `yaml:"email,omitempty"`
	// Hosts are the names a certificate is obtained for, one certificate each. Wildcards need
	// the DNS-01 challenge and are not supported.
	Hosts []string `yaml:"hosts"`
	// Directory is the CA's ACME directory URL.
	Directory string `yaml:"directory"`
	// Storage is the directory holding the account, the certificates and the locks.
	Storage string `yaml:"storage"`
	// CARoot is a PEM file of CA certificates trusted for the HTTPS connection to Directory (a
	// private or test CA); empty trusts the system's roots.
	CARoot string `yaml:"ca_root,omitempty"`
	// RenewBefore is how long before expiry a certificate is renewed at the latest; the CA's
	// renewal information (ARI) may ask for an earlier renewal.
	RenewBefore Duration `yaml:"renew_before"`
	// Challenges are the challenge types offered: http-01 and tls-alpn-01 (both by default).
	Challenges []ACMEChallenge `yaml:"challenges"`
}

// ACMEChallenge is an ACME challenge type the gateway answers.
type ACMEChallenge string

// ACME challenge types.
const (
	ChallengeHTTP01    ACMEChallenge = "http-01"
	ChallengeTLSALPN01 ACMEChallenge = "tls-alpn-01"
)

// ACME defaults. Let's Encrypt certificates live 90 days (and fewer in future); renewing 30 days
// before expiry leaves weeks of retries when the CA is down.
const (
	DefaultACMEDirectory   = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultACMEStorage     = "acme"
	DefaultACMERenewBefore = Duration(30 * 24 * time.Hour)
)

var acmeChallenges = []ACMEChallenge{ChallengeHTTP01, ChallengeTLSALPN01}

func (c *Config) applyACMEDefaults(a *ACME) {
	setDefault(&a.Directory, DefaultACMEDirectory)
	setDefault(&a.Storage, DefaultACMEStorage)
	if !c.written(c.acmePath(a) + ".renew_before") {
		a.RenewBefore = DefaultACMERenewBefore
	}
	if len(a.Challenges) == 0 {
		a.Challenges = append([]ACMEChallenge(nil), acmeChallenges...)
	}
	for i, h := range a.Hosts {
		a.Hosts[i] = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
	}
}

// acmePath is the field path of a, for positions and "was it written".
func (c *Config) acmePath(a *ACME) string {
	for i, l := range c.Server.Listeners {
		if l.TLS != nil && l.TLS.ACME == a {
			return fmt.Sprintf("server.listeners[%d].tls.acme", i)
		}
	}
	return "admin.tls.acme"
}

func (a *ACME) resolvePaths(abs func(string) string) {
	a.Storage = abs(a.Storage)
	a.CARoot = abs(a.CARoot)
}

// Offers reports whether the challenge type ch is enabled.
func (a *ACME) Offers(ch ACMEChallenge) bool {
	return slices.Contains(a.Challenges, ch)
}

func (v *validator) acme(p string, a *ACME) {
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email || !strings.Contains(addr.Address[strings.LastIndexByte(addr.Address, '@')+1:], ".") {
			v.errorf(p+".email", "invalid email address %q (write name@example.com, or leave it out)", a.Email)
		}
	}
	if len(a.Hosts) == 0 {
		v.errorf(p+".hosts", "at least one host name is required: the names certificates are obtained for")
	}
	seen := map[string]int{}
	for i, h := range a.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", p, i)
		switch {
		case strings.HasPrefix(h, "*."):
			v.errorf(hp, "wildcard %q needs the DNS-01 challenge, which the gateway does not answer; list each name", h)
		case isIPLiteral(h):
			v.errorf(hp, "%q is an IP address; ACME certificates here are for DNS names", h)
		case strings.ContainsRune(h, ':') || !validHost(h):
			v.errorf(hp, "invalid host name %q", h)
		case !strings.Contains(h, "."):
			v.errorf(hp, "%q is not a fully qualified name (a public CA will not issue for it)", h)
		}
		if prev, dup := seen[h]; dup {
			v.errorf(hp, "duplicate host %q (also hosts[%d])", h, prev)
		}
		seen[h] = i
	}
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errorf(p+".directory", "must be the https:// URL of the CA's ACME directory, got %q", a.Directory)
	}
	if a.Storage == "" {
		v.errorf(p+".storage", "required: the directory holding the account and certificates")
	}
	v.positive(p+".renew_before", a.RenewBefore)
	if a.Offers(ChallengeHTTP01) && len(a.Challenges) == 1 && !v.hasPlainListener() {
		v.errorf(p+".challenges", "http-01 alone needs a plain listener (port 80) to answer on; add one or offer tls-alpn-01")
	}
	for i, ch := range a.Challenges {
		if !slices.Contains(acmeChallenges, ch) {
			v.errorf(fmt.Sprintf("%s.challenges[%d]", p, i), "must be http-01 or tls-alpn-01, got %q%s", ch, suggest(string(ch), names(acmeChallenges)))
		}
	}
}

func isIPLiteral(h string) bool {
	_, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil
}

func (v *validator) hasPlainListener() bool {
	for _, l := range v.c.EffectiveListeners() {
		if l.TLS == nil {
			return true
		}
	}
	return false
}
