package config

import (
	"strings"
	"testing"
)

// policyCase is a route fragment and the error it must produce ("" for none). The fragment is
// the tail of a route mapping; upstreams a and b exist.
type policyCase struct {
	name  string
	route string
	want  string // a substring of the error, with file:line:column; "" means valid
}

func runPolicyCases(t *testing.T, cases []policyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "upstreams:\n  a: {targets: [\"127.0.0.1:1\"]}\n  b: {targets: [\"127.0.0.1:2\"]}\nroutes:\n  - name: r\n    match: {path_prefix: /}\n" + tc.route
			_, err := Parse([]byte(yaml), "routes.yaml")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
