package config

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestRoutePolicyDocumentation holds docs/configuration.md's Access lists, Forward auth,
// Redirects and rewrites and Traffic splitting sections to the loader: every field of their
// types is in a table, and a default written as one code span is the one the loader fills in.
func TestRoutePolicyDocumentation(t *testing.T) {
	sections := edgeDocSections(t)
	cfg, err := Parse([]byte(`
upstreams: {a: {targets: ["127.0.0.1:1"]}, b: {targets: ["127.0.0.1:2"]}}
routes:
  - name: r
    match: {path_prefix: /}
    upstream: a
    access: {allow: [10.0.0.0/8]}
    forward_auth: {url: "http://127.0.0.1:3/verify"}
    rewrite: {regex: "^/x$", replacement: /y}
    split: {upstreams: [{upstream: a, weight: 1}, {upstream: b}]}
  - name: moved
    match: {path: /moved}
    redirect: {to: /new}
`), "defaults")
	if err != nil {
		t.Fatal(err)
	}
	r, moved := cfg.Routes[0], cfg.Routes[1]
	effective := map[string]string{
		"forward_auth.request_headers": "[" + strings.Join(r.ForwardAuth.RequestHeaders, ", ") + "]",
		"forward_auth.timeout":         r.ForwardAuth.Timeout.D().String(),
		"forward_auth.on_error":        r.ForwardAuth.OnError,
		"redirect.status":              "302",
		"split.upstreams[].weight":     "0",
	}
	if moved.Redirect.Status != 302 || r.Split.Upstreams[1].Weight != 0 {
		t.Fatalf("defaults changed: redirect %d, weight %d", moved.Redirect.Status, r.Split.Upstreams[1].Weight)
	}
	rowRE := regexp.MustCompile("(?m)^\\| `([a-z_.\\[\\]]+)` \\| ([^|]*) \\|")
	for _, d := range []struct {
		heading, prefix string
		typ             reflect.Type
	}{
		{"Access lists", "access.", reflect.TypeFor[Access]()},
		{"Forward auth", "forward_auth.", reflect.TypeFor[ForwardAuth]()},
		{"Redirects and rewrites", "redirect.", reflect.TypeFor[Redirect]()},
		{"Redirects and rewrites", "rewrite.", reflect.TypeFor[Rewrite]()},
		{"Traffic splitting", "split.", reflect.TypeFor[Split]()},
		{"Traffic splitting", "split.upstreams[].", reflect.TypeFor[SplitUpstream]()},
		{"Traffic splitting", "split.upstreams[].match.", reflect.TypeFor[SplitMatch]()},
	} {
		text, ok := sections[d.heading]
		if !ok {
			t.Errorf("docs/configuration.md has no %q section", d.heading)
			continue
		}
		documented := map[string]string{}
		for _, m := range rowRE.FindAllStringSubmatch(text, -1) {
			documented[m[1]] = strings.TrimSpace(m[2])
		}
		for i := range d.typ.NumField() {
			tag, _, _ := strings.Cut(d.typ.Field(i).Tag.Get("yaml"), ",")
			name := d.prefix + tag
			def, ok := documented[name]
			if !ok {
				t.Errorf("%s: field %s is not in a table", d.heading, name)
				continue
			}
			if strings.Count(def, "`") != 2 || !strings.HasPrefix(def, "`") || !strings.HasSuffix(def, "`") {
				continue
			}
			want := strings.Trim(def, "`")
			got, ok := effective[name]
			if !ok {
				t.Errorf("%s: the docs give %s a default (%s) this test does not know", d.heading, name, want)
				continue
			}
			if !sameSetting(got, want) {
				t.Errorf("%s: the docs say %s defaults to %s; the loader fills in %s", d.heading, name, want, got)
			}
		}
	}
}
