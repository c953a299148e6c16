package config

import (
	"fmt"
	"strings"
)

// Split spreads a route's requests over several upstreams by weight (a canary release at 95/5),
// Envoy's weighted_clusters, nginx's split_clients. A request that satisfies an entry's Match
// goes to that entry's upstream whatever the weights. The route's own upstream must be one of
// the entries: it sets the route's timeout default, as on any route.
type Split struct {
	Upstreams []SplitUpstream `yaml:"upstreams"`
	// Sticky keeps a client on one upstream: client_ip hashes the client's address,
	// cookie:<name> the value of that cookie (requests without it are spread by weight). Left
	// out, requests are spread by a counter, exactly in proportion to the weights.
	Sticky string `yaml:"sticky,omitempty"`
}

// SplitUpstream is one upstream of a split and its share.
type SplitUpstream struct {
	Upstream string `yaml:"upstream"`
	// Weight is the upstream's share relative to the others' (0 to 10000); an entry of weight
	// 0 receives only the requests its Match selects.
	Weight int         `yaml:"weight"`
	Match  *SplitMatch `yaml:"match,omitempty"`
}

// SplitMatch selects requests by a header or a cookie with exactly Value.
type SplitMatch struct {
	Header string `yaml:"header,omitempty"`
	Cookie string `yaml:"cookie,omitempty"`
	Value  string `yaml:"value"`
}

// Sticky kinds of a split.
const (
	StickyNone     = ""
	StickyClientIP = "client_ip"
	StickyCookie   = "cookie"
)

// StickyKind splits Sticky into its kind and argument (the cookie name).
func (s *Split) StickyKind() (kind, arg string) {
	kind, arg, _ = strings.Cut(s.Sticky, ":")
	return kind, arg
}

// MaxSplitWeight bounds one entry's weight, so a split's slot table stays small.
const MaxSplitWeight = 10000

func (v *validator) split(p string, r *Route) {
	s := r.Split
	p += ".split"
	if r.Upstream == "" {
		v.errorf(p, "a split spreads a proxied route over upstreams; set the route's upstream to one of them")
	}
	if r.WebSocket != nil {
		v.errorf(p, "WebSocket upgrades go to the route's upstream only; a split route cannot allow them")
	}
	if len(s.Upstreams) < 2 {
		v.errorf(p+".upstreams", "needs at least two upstreams to split between, got %d", len(s.Upstreams))
	}
	seen := map[string]int{}
	total, hasRoute := 0, false
	for i, e := range s.Upstreams {
		ep := fmt.Sprintf("%s.upstreams[%d]", p, i)
		switch {
		case e.Upstream == "":
			v.errorf(ep+".upstream", "required")
		case v.c.Upstreams[e.Upstream] == nil:
			v.errorf(ep+".upstream", "undefined upstream %q%s", e.Upstream, suggest(e.Upstream, sortedKeys(v.c.Upstreams)))
		default:
			if j, dup := seen[e.Upstream]; dup {
				v.errorf(ep+".upstream", "upstream %q is already upstreams[%d]", e.Upstream, j)
			}
			seen[e.Upstream] = i
		}
		hasRoute = hasRoute || e.Upstream == r.Upstream
		if e.Weight < 0 || e.Weight > MaxSplitWeight {
			v.errorf(ep+".weight", "must be between 0 and %d, got %d", MaxSplitWeight, e.Weight)
		} else {
			total += e.Weight
		}
		if m := e.Match; m != nil {
			switch {
			case (m.Header == "") == (m.Cookie == ""):
				v.errorf(ep+".match", "needs exactly one of header and cookie")
			case m.Header != "" && !validHeaderName(m.Header):
				v.errorf(ep+".match.header", "invalid header name %q", m.Header)
			case m.Cookie != "" && !validCookieName(m.Cookie):
				v.errorf(ep+".match.cookie", "invalid cookie name %q", m.Cookie)
			}
			if m.Value == "" {
				v.errorf(ep+".match.value", "required: the exact value that selects this upstream")
			}
		}
	}
	if len(s.Upstreams) > 0 && total == 0 {
		v.errorf(p+".upstreams", "the weights add up to 0; give at least one upstream a weight")
	}
	if r.Upstream != "" && !hasRoute && len(s.Upstreams) > 0 {
		v.errorf(p+".upstreams", "the route's upstream %q is not one of the split's upstreams", r.Upstream)
	}
	switch kind, arg := s.StickyKind(); kind {
	case StickyNone:
		if strings.Contains(s.Sticky, ":") {
			v.errorf(p+".sticky", "must be client_ip or cookie:<name>, got %q", s.Sticky)
		}
	case StickyClientIP:
		if arg != "" || strings.Contains(s.Sticky, ":") {
			v.errorf(p+".sticky", "client_ip takes no argument, got %q", s.Sticky)
		}
	case StickyCookie:
		if !validCookieName(arg) {
			v.errorf(p+".sticky", "cookie:<name> needs a valid cookie name, got %q", s.Sticky)
		}
	default:
		v.errorf(p+".sticky", "must be client_ip or cookie:<name>, got %q", s.Sticky)
	}
}

// validCookieName: a token (RFC 6265 cookie-name).
func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
