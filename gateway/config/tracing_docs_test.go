package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestTracingDocumentation holds docs/configuration.md's Tracing section to the loader: every
// field of server.tracing has a row, and the defaults the rows state are the loader's.
func TestTracingDocumentation(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Tracing\n")
	if start < 0 {
		t.Fatal("docs/configuration.md has no Tracing section")
	}
	text = text[start+1:]
	if end := strings.Index(text, "\n## "); end >= 0 {
		text = text[:end]
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.]+)`[^|]* \\| ([^|]*) \\|").FindAllStringSubmatch(text, -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	cfg, err := Parse([]byte("server: {tracing: {}}\nupstreams: {a: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: a, match: {path_prefix: /}, upstream: a}]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(*cfg.Server.Tracing)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		doc, ok := rows[name]
		if !ok {
			t.Errorf("server.tracing.%s is not documented", name)
			continue
		}
		got := fmt.Sprint(v.Field(i).Interface())
		switch f.Type {
		case reflect.TypeFor[*bool]():
			got = "true" // nil: on with the section present
		case reflect.TypeFor[[]CIDR]():
			got = "server.trusted_proxies"
		}
		if !strings.HasPrefix(doc, "`"+got+"`") {
			t.Errorf("server.tracing.%s: documented default %s, the loader's is %q", name, doc, got)
		}
	}
	if _, ok := rows["tracing.sample_ratio"]; !ok {
		t.Error("routes[].tracing.sample_ratio is not documented")
	}
}
