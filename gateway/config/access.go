package config

import "fmt"

// Access is a route's address filter, nginx's allow and deny: a client address in Deny is
// refused, and when Allow is not empty an address outside it is refused too (403). The address
// is the client's as the gateway determines it: the peer, or the rightmost untrusted address of
// X-Forwarded-For when the peer is in server.trusted_proxies.
type Access struct {
	Allow []CIDR `yaml:"allow,omitempty"`
	Deny  []CIDR `yaml:"deny,omitempty"`
}

func (v *validator) access(p string, r *Route) {
	a := r.Access
	p += ".access"
	if len(a.Allow)+len(a.Deny) == 0 {
		v.errorf(p, "needs allow or deny (or both); leave access out to admit every address")
		return
	}
	for i, al := range a.Allow {
		for j, de := range a.Deny {
			// Deny is checked first: an allow entry inside a deny entry never admits anyone,
			// which is a mistake rather than an intent.
			if de.Bits() <= al.Bits() && de.Contains(al.Addr()) {
				v.errorf(fmt.Sprintf("%s.allow[%d]", p, i), "%s lies inside deny[%d] (%s), which is checked first, so it admits nobody", al.Prefix, j, de.Prefix)
				break
			}
		}
	}
}
