package config

import "testing"

func TestSplitValidation(t *testing.T) {
	const two = "    upstream: a\n    split:\n      upstreams:\n        - {upstream: a, weight: 95}\n        - {upstream: b, weight: 5}\n"
	runPolicyCases(t, []policyCase{
		{"canary", two, ""},
		{"sticky cookie", two + "      sticky: cookie:session\n", ""},
		{"sticky client", two + "      sticky: client_ip\n", ""},
		{"match header, weight 0", "    upstream: a\n    split:\n      upstreams:\n        - {upstream: a, weight: 1}\n        - {upstream: b, weight: 0, match: {header: X-Canary, value: always}}\n", ""},
		{"unknown sticky", two + "      sticky: header:X\n", "routes.yaml:12:15: routes[0].split.sticky: must be client_ip or cookie:<name>"},
		{"bad cookie", two + "      sticky: \"cookie:a b\"\n", "routes[0].split.sticky: cookie:<name> needs a valid cookie name"},
		{"one upstream", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: 1}]}\n", "routes[0].split.upstreams: needs at least two upstreams"},
		{"undefined", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: 1}, {upstream: c, weight: 1}]}\n", "routes[0].split.upstreams[1].upstream: undefined upstream \"c\""},
		{"duplicate", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: 1}, {upstream: a, weight: 1}]}\n", "routes[0].split.upstreams[1].upstream: upstream \"a\" is already upstreams[0]"},
		{"route upstream missing", "    upstream: a\n    split: {upstreams: [{upstream: b, weight: 1}, {upstream: b2, weight: 1}]}\n", "the route's upstream \"a\" is not one of the split's upstreams"},
		{"weights zero", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: 0}, {upstream: b, weight: 0}]}\n", "routes[0].split.upstreams: the weights add up to 0"},
		{"weight range", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: -1}, {upstream: b, weight: 1}]}\n", "routes[0].split.upstreams[0].weight: must be between 0 and 10000, got -1"},
		{"match both", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: 1}, {upstream: b, weight: 1, match: {header: X, cookie: y, value: v}}]}\n", "routes[0].split.upstreams[1].match: needs exactly one of header and cookie"},
		{"match no value", "    upstream: a\n    split: {upstreams: [{upstream: a, weight: 1}, {upstream: b, weight: 1, match: {header: X}}]}\n", "routes[0].split.upstreams[1].match.value: required"},
		{"websocket", "    upstream: a\n    websocket: true\n    split: {upstreams: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]}\n", "routes[0].split: WebSocket upgrades go to the route's upstream only"},
	})
}
