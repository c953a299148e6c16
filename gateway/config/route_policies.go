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

// routePolicies is every per-route policy field with how to tell a route wrote it. A new
// policy adds its field to Route and one line here.
var routePolicies = []struct {
	name PolicyName
	set  func(*Route) bool
}{
	{PolicyCORS, func(r *Route) bool { return r.CORS != nil }},
	{PolicyAuth, func(r *Route) bool { return r.Auth != nil }},
	{PolicyCompression, func(r *Route) bool { return r.Compression != nil }},
	{PolicyRateLimit, func(r *Route) bool { return r.RateLimit != nil }},
	{PolicyCache, func(r *Route) bool { return r.Cache != nil }},
	{PolicyStatic, func(r *Route) bool { return r.Static != nil }},
	{PolicyAccess, func(r *Route) bool { return r.Access != nil }},
	{PolicyForwardAuth, func(r *Route) bool { return r.ForwardAuth != nil }},
	{PolicyRedirect, func(r *Route) bool { return r.Redirect != nil }},
	{PolicyRewrite, func(r *Route) bool { return r.Rewrite != nil }},
	{PolicySplit, func(r *Route) bool { return r.Split != nil }},
}

// Policies returns the per-route policies r asks for, in the order of their fields.
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
