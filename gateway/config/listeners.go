package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Listener is one public listener: plain HTTP, or HTTPS with a tls section. The list of
// listeners and their addresses are fixed at start; what a listener does (certificates, trusted
// proxies, redirect) can change on reload.
type Listener struct {
	// Name identifies the listener in routes' match.listeners and in metrics; it defaults to the
	// address.
	Name string `yaml:"name,omitempty"`
	Addr string `yaml:"addr"`
	// TLS terminates HTTPS on this listener; nil serves plain HTTP.
	TLS *TLS `yaml:"tls,omitempty"`
	// ProxyProtocol, when set, requires a PROXY protocol (v1 or v2) header on every connection,
	// accepted only from the trusted proxies listed.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol,omitempty"`
	// RedirectHTTPS answers every request (except the health path and ACME HTTP-01 challenges)
	// with a 308 to the same host and path on the gateway's HTTPS listener.
	RedirectHTTPS bool `yaml:"redirect_https,omitempty"`
	// HTTP2 serves HTTP/2 on the listener; unset is on for TLS, off for plain (see http2.go).
	HTTP2 *bool `yaml:"http2,omitempty"`
}

// ProxyProtocol configures PROXY protocol on a listener.
type ProxyProtocol struct {
	// TrustedProxies are the load balancers allowed to connect; any other peer is closed
	// without a byte read.
	TrustedProxies []CIDR `yaml:"trusted_proxies"`
}

// EffectiveListeners returns the listeners the gateway serves: server.listeners, or when it is
// empty one plain listener on server.listen named "default".
func (c *Config) EffectiveListeners() []Listener {
	if len(c.Server.Listeners) > 0 {
		return c.Server.Listeners
	}
	return []Listener{{Name: DefaultListenerName, Addr: c.Server.Listen}}
}

// DefaultListenerName names the listener made from server.listen.
const DefaultListenerName = "default"

// Trusts reports whether a PROXY protocol sender at addr is trusted.
func (p *ProxyProtocol) Trusts(addr netip.Addr) bool {
	for _, c := range p.TrustedProxies {
		if c.Contains(addr) {
			return true
		}
	}
	return false
}

func (c *Config) applyListenerDefaults() {
	s := &c.Server
	for i := range s.Listeners {
		l := &s.Listeners[i]
		setDefault(&l.Name, l.Addr)
		if l.TLS != nil {
			c.applyTLSDefaults(l.TLS)
		}
	}
	if len(s.Listeners) > 0 && !c.written("server.listen") {
		// server.listen stays meaningful to what reads it (the port registered in Consul):
		// the first listener.
		s.Listen = s.Listeners[0].Addr
	}
	if c.Admin.TLS != nil {
		c.applyTLSDefaults(c.Admin.TLS)
	}
}

// resolveListenerPaths makes certificate files relative to the configuration's directory.
func (c *Config) resolveListenerPaths(abs func(string) string) {
	for i := range c.Server.Listeners {
		if t := c.Server.Listeners[i].TLS; t != nil {
			t.resolvePaths(abs)
		}
	}
	if c.Admin.TLS != nil {
		c.Admin.TLS.resolvePaths(abs)
	}
}

func (v *validator) listeners() {
	if t := v.c.Admin.TLS; t != nil {
		v.tls("admin.tls", t)
		if t.ClientCertHeader != "" || t.HSTS != "" {
			v.errorf("admin.tls", "client_cert_header and hsts apply to public listeners, not the admin API")
		}
	}
	s := &v.c.Server
	if len(s.Listeners) == 0 {
		return
	}
	if v.c.written("server.listen") {
		v.errorf("server.listen", "server.listen and server.listeners are exclusive: list the plain listener in server.listeners")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	tlsListeners := 0
	for i := range s.Listeners {
		l := &s.Listeners[i]
		p := fmt.Sprintf("server.listeners[%d]", i)
		v.listenAddr(p+".addr", l.Addr)
		if prev, dup := addrs[l.Addr]; dup {
			v.errorf(p+".addr", "duplicate address %q (also server.listeners[%d])", l.Addr, prev)
		}
		addrs[l.Addr] = i
		if strings.ContainsAny(l.Name, " \t\r\n\"") {
			v.errorf(p+".name", "must not contain spaces or quotes, got %q", l.Name)
		}
		if prev, dup := names[l.Name]; dup {
			v.errorf(p+".name", "duplicate listener name %q (also server.listeners[%d])", l.Name, prev)
		}
		names[l.Name] = i
		if l.TLS != nil {
			tlsListeners++
			v.tls(p+".tls", l.TLS)
			if l.RedirectHTTPS {
				v.errorf(p+".redirect_https", "is for a plain listener; this one already serves HTTPS")
			}
		}
		if pp := l.ProxyProtocol; pp != nil && len(pp.TrustedProxies) == 0 {
			v.errorf(p+".proxy_protocol.trusted_proxies", "required: the load balancers allowed to send PROXY headers (anyone else could claim any client address)")
		}
	}
	if tlsListeners == 0 {
		for i := range s.Listeners {
			if s.Listeners[i].RedirectHTTPS {
				v.errorf(fmt.Sprintf("server.listeners[%d].redirect_https", i), "needs a listener with tls to redirect to")
			}
		}
	}
}

// routeListeners checks a route's match.listeners against the configured listeners.
func (v *validator) routeListeners(p string, r *Route) {
	if len(r.Match.Listeners) == 0 {
		return
	}
	var names []string
	for _, l := range v.c.EffectiveListeners() {
		names = append(names, l.Name)
	}
	for i, n := range r.Match.Listeners {
		if !slices.Contains(names, n) {
			v.errorf(fmt.Sprintf("%s.match.listeners[%d]", p, i), "unknown listener %q; one of %s%s", n, strings.Join(names, ", "), suggest(n, names))
		}
	}
}
