package config

import "testing"

func TestAccessValidation(t *testing.T) {
	runPolicyCases(t, []policyCase{
		{"allow and deny", "    upstream: a\n    access: {allow: [10.0.0.0/8, \"2001:db8::/32\"], deny: [192.168.1.7]}\n", ""},
		{"empty", "    upstream: a\n    access: {}\n", "routes.yaml:8:13: routes[0].access: needs allow or deny"},
		{"bad cidr", "    upstream: a\n    access: {allow: [10.0.0.0/33]}\n", "routes.yaml:8:22: routes[0].access.allow[0]: invalid CIDR"},
		{"allow inside deny", "    upstream: a\n    access:\n      deny: [10.0.0.0/8]\n      allow: [10.1.0.0/16]\n", "routes.yaml:10:15: routes[0].access.allow[0]: 10.1.0.0/16 lies inside deny[0]"},
		{"deny inside allow is an exception", "    upstream: a\n    access: {allow: [10.0.0.0/8], deny: [10.6.0.0/16]}\n", ""},
	})
}
