package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestRedirectValidation(t *testing.T) {
	runPolicyCases(t, []policyCase{
		{"www to apex", "    redirect: {to: \"https://example.com$request_uri\", status: 301}\n", ""},
		{"path with variables", "    redirect: {to: \"/new$uri?$args\"}\n", ""},
		{"scheme variable", "    redirect: {to: \"$scheme://$host/login\"}\n", ""},
		{"with an upstream", "    upstream: a\n    redirect: {to: /x}\n", "routes.yaml:8:15: routes[0].redirect: a redirect route answers itself; leave out upstream, static and respond"},
		{"status", "    redirect: {to: /x, status: 303}\n", "routes.yaml:7:32: routes[0].redirect.status: must be 301, 302, 307 or 308, got 303"},
		{"missing to", "    redirect: {status: 301}\n", "routes[0].redirect.to: required"},
		{"relative", "    redirect: {to: example.com}\n", "routes.yaml:7:20: routes[0].redirect.to: must be a path (/...) or an absolute http(s) URL"},
		{"scheme-relative", "    redirect: {to: //evil.example}\n", "routes[0].redirect.to: a target starting with // is another host"},
		{"unknown variable", "    redirect: {to: \"https://example.com$request_url\"}\n", "routes[0].redirect.to: unknown variable $request_url (did you mean \"request_uri\"?)"},
	})
}

func TestRedirectDefaultStatus(t *testing.T) {
	c, err := Parse([]byte("upstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, match: {path_prefix: /}, redirect: {to: /x}}]"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Routes[0].Redirect.Status; got != DefaultRedirectStatus {
		t.Fatalf("status %d, want %d", got, DefaultRedirectStatus)
	}
}

func TestParseRedirect(t *testing.T) {
	got, err := ParseRedirect("https://$host$request_uri?a=$$1&x=$args")
	if err != nil {
		t.Fatal(err)
	}
	want := []RedirectPart{{Literal: "https://"}, {Variable: "host"}, {Variable: "request_uri"}, {Literal: "?a=$1&x="}, {Variable: "args"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// FuzzParseRedirect: any target either fails with an error or parses into parts that, written
// back, parse to the same parts.
func FuzzParseRedirect(f *testing.F) {
	for _, s := range []string{"https://example.com$request_uri", "/v2$uri?$args", "$$", "$", "$scheme://$http_host/x$$y", "$nope", "a$1b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, to string) {
		parts, err := ParseRedirect(to)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range parts {
			if p.Variable != "" {
				b.WriteString("$" + p.Variable)
				continue
			}
			b.WriteString(strings.ReplaceAll(p.Literal, "$", "$$"))
		}
		again, err := ParseRedirect(b.String())
		if err != nil || !reflect.DeepEqual(merge(again), merge(parts)) {
			t.Fatalf("%q → %+v → %q → %+v, %v", to, parts, b.String(), again, err)
		}
	})
}

// merge joins adjacent literals, which a rendering may split differently.
func merge(parts []RedirectPart) []RedirectPart {
	var out []RedirectPart
	for _, p := range parts {
		if n := len(out); n > 0 && p.Variable == "" && out[n-1].Variable == "" {
			out[n-1].Literal += p.Literal
			continue
		}
		out = append(out, p)
	}
	return out
}
