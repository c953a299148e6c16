package config

// PolicyName is a per-route policy by the routes.yaml field that asks for it.
type PolicyName string

// The per-route policies. The gateway builds each from a row of its policy table
// (gateway/policies); a route asking for one that no row builds is refused.
const (
	PolicyCORS        PolicyName = "cors"
	PolicyAuth        PolicyName = "auth"
	PolicyCompression PolicyName = "compression"
	PolicyRateLimit   PolicyName = "rate_limit"
	PolicyCache       PolicyName = "cache"
	PolicyStatic      PolicyName = "static"
	PolicyAccess      PolicyName = "access"
	PolicyForwardAuth PolicyName = "forward_auth"
	PolicyRedirect    PolicyName = "redirect"
	PolicyRewrite     PolicyName = "rewrite"
	PolicySplit       PolicyName = "split"
)

// routePolicy is the configuration side of one per-route policy; its fields, defaults and
// validation live in the policy's own file (cors.go, auth.go, ...).
type routePolicy struct {
	name PolicyName
	// set reports whether the route wrote the policy's field.
	set func(*Route) bool
	// defaults fills what the route left out (p is the route's path, "routes[3]"); nil when
	// there is nothing to fill.
	defaults func(c *Config, p string, r *Route)
	// validate reports the policy's problems under p.
	validate func(v *validator, p string, r *Route)
}

// routePolicies is every per-route policy. A new policy adds its field to Route and one line
// here. Defaults run in this order: static routes get their methods (GET, HEAD) before CORS
// allows them by default and adds OPTIONS.
var routePolicies = []routePolicy{
	{PolicyStatic, func(r *Route) bool { return r.Static != nil }, (*Config).staticDefaults, (*validator).static},
	{PolicyCORS, func(r *Route) bool { return r.CORS != nil }, (*Config).corsDefaults, (*validator).cors},
	{PolicyAuth, func(r *Route) bool { return r.Auth != nil }, nil, (*validator).auth},
	{PolicyCompression, func(r *Route) bool { return r.Compression != nil }, (*Config).compressionDefaults, (*validator).compression},
	{PolicyRateLimit, func(r *Route) bool { return r.RateLimit != nil }, (*Config).rateLimitDefaults, (*validator).rateLimit},
	{PolicyCache, func(r *Route) bool { return r.Cache != nil }, (*Config).cacheDefaults, (*validator).cache},
	{PolicyAccess, func(r *Route) bool { return r.Access != nil }, nil, (*validator).access},
	{PolicyForwardAuth, func(r *Route) bool { return r.ForwardAuth != nil }, (*Config).forwardAuthDefaults, (*validator).forwardAuth},
	{PolicyRedirect, func(r *Route) bool { return r.Redirect != nil }, (*Config).redirectDefaults, (*validator).redirect},
	{PolicyRewrite, func(r *Route) bool { return r.Rewrite != nil }, nil, (*validator).rewritePath},
	{PolicySplit, func(r *Route) bool { return r.Split != nil }, nil, (*validator).split},
}

// Policies returns the per-route policies r asks for.
func (r *Route) Policies() []PolicyName {
	var names []PolicyName
	for _, p := range routePolicies {
		if p.set(r) {
			names = append(names, p.name)
		}
	}
	return names
}

// PolicyNames returns every per-route policy, so a gateway can check it has a row for each.
func PolicyNames() []PolicyName {
	names := make([]PolicyName, len(routePolicies))
	for i, p := range routePolicies {
		names[i] = p.name
	}
	return names
}

func (c *Config) routePolicyDefaults(p string, r *Route) {
	for _, rp := range routePolicies {
		if rp.defaults != nil && rp.set(r) {
			rp.defaults(c, p, r)
		}
	}
}

func (v *validator) routePolicies(p string, r *Route) {
	for _, rp := range routePolicies {
		if rp.set(r) {
			rp.validate(v, p, r)
		}
	}
}

// written reports whether the file wrote the field at path (e.g. "routes[2].cache.ttl"), so a
// default never replaces a value given explicitly, a zero included.
func (c *Config) written(path string) bool {
	_, ok := c.positions[path]
	return ok
}

// names turns typed constants back into strings, for suggestions in errors.
func names[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
