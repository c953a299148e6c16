package config

import "testing"

func TestRewriteValidation(t *testing.T) {
	runPolicyCases(t, []policyCase{
		{"old to new", "    upstream: a\n    rewrite: {regex: \"^/old/(.*)$\", replacement: /new/$1}\n", ""},
		{"named group", "    upstream: a\n    rewrite: {regex: \"^/u/(?P<id>[0-9]+)$\", replacement: /users/$id}\n", ""},
		{"bad regex", "    upstream: a\n    rewrite: {regex: \"^/old/(.*\", replacement: /new}\n", "routes.yaml:8:22: routes[0].rewrite.regex: error parsing regexp: missing closing )"},
		{"perl-only syntax is refused (RE2)", "    upstream: a\n    rewrite: {regex: \"^/(?=x)\", replacement: /new}\n", "routes[0].rewrite.regex: error parsing regexp"},
		{"group out of range", "    upstream: a\n    rewrite: {regex: \"^/old/(.*)$\", replacement: /new/$2}\n", "routes[0].rewrite.replacement: $2 refers to a group the regex does not have (it has 1)"},
		{"glued reference", "    upstream: a\n    rewrite: {regex: \"^/old/(.*)$\", replacement: /new/$1_v2}\n", "routes[0].rewrite.replacement: $1_v2 names no group"},
		{"relative replacement", "    upstream: a\n    rewrite: {regex: \"^/old$\", replacement: new}\n", "routes.yaml:8:45: routes[0].rewrite.replacement: must be a path starting with /"},
		{"query in replacement", "    upstream: a\n    rewrite: {regex: \"^/old$\", replacement: \"/new?x=1\"}\n", "routes[0].rewrite.replacement: must be a path without '?'"},
		{"with strip_prefix", "    upstream: a\n    strip_prefix: /\n    rewrite: {regex: \"^/old$\", replacement: /new}\n", "routes[0].rewrite: rewrite and strip_prefix/add_prefix both change the path"},
		{"without upstream", "    respond: {status: 204}\n    rewrite: {regex: \"^/old$\", replacement: /new}\n", "routes[0].rewrite: rewrite changes the path sent to an upstream"},
	})
}
