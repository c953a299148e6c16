package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// edgeDocSections returns the text of each "## Heading" section of docs/configuration.md.
func edgeDocSections(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	parts := regexp.MustCompile(`(?m)^## `).Split(string(data), -1)
	for _, p := range parts[1:] {
		heading, body, _ := strings.Cut(p, "\n")
		sections[strings.TrimSpace(heading)] = body
	}
	return sections
}

// completeEdgeExample gives a documentation fragment stand-in upstreams (and a route when it has
// none), so the real loader checks it.
func completeEdgeExample(t *testing.T, fragment string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(fragment), &doc); err != nil {
		t.Fatalf("example is not YAML: %v\n%s", err, fragment)
	}
	if _, ok := doc["upstreams"]; !ok {
		ups := map[string]any{}
		for _, name := range []string{"app", "products", "users", "orders", "payments"} {
			ups[name] = map[string]any{"targets": []string{"127.0.0.1:3000"}}
		}
		doc["upstreams"] = ups
	}
	if _, ok := doc["routes"]; !ok {
		doc["routes"] = []any{map[string]any{"name": "app", "match": map[string]any{"path_prefix": "/"}, "upstream": "app"}}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var edgeDocs = []struct {
	heading string
	prefix  string // how the section's tables name the fields
	typ     reflect.Type
}{
	{"JWT", "", reflect.TypeFor[JWT]()},
	{"JWT", "auth.", reflect.TypeFor[Auth]()},
	{"CORS", "cors.", reflect.TypeFor[CORS]()},
	{"Compression", "compression.", reflect.TypeFor[Compression]()},
	{"Static files", "static.", reflect.TypeFor[Static]()},
}

// TestEdgeDocumentation holds docs/configuration.md's JWT, CORS, Compression and Static files
// sections to the loader: every YAML example loads, every field is documented, and every
// default the tables state is the one the loader fills in.
func TestEdgeDocumentation(t *testing.T) {
	sections := edgeDocSections(t)
	blockRE := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	for _, heading := range []string{"JWT", "CORS", "Compression", "Static files"} {
		text, ok := sections[heading]
		if !ok {
			t.Errorf("docs/configuration.md has no %q section", heading)
			continue
		}
		blocks := blockRE.FindAllStringSubmatch(text, -1)
		if len(blocks) == 0 {
			t.Errorf("%s: no YAML example", heading)
		}
		for i, b := range blocks {
			if _, err := ParseWithEnv(completeEdgeExample(t, b[1]), "docs", func(string) (string, bool) { return "", false }); err != nil {
				t.Errorf("%s example %d does not load:\n%s\n%v", heading, i+1, b[1], err)
			}
		}
	}

	effective := edgeDefaults(t)
	rowRE := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| ([^|]*) \\|")
	for _, d := range edgeDocs {
		text := sections[d.heading]
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
			// A default written as one code span is checked against the loader's.
			if strings.Count(def, "`") != 2 || !strings.HasPrefix(def, "`") || !strings.HasSuffix(def, "`") {
				continue
			}
			want := strings.Trim(def, "`")
			got, ok := effective[name]
			if !ok {
				t.Errorf("%s: no effective value for %s", d.heading, name)
				continue
			}
			if !sameSetting(got, want) {
				t.Errorf("%s: the docs say %s defaults to %s; the loader fills in %s", d.heading, name, want, got)
			}
		}
	}
}

// edgeDefaults loads a configuration that names every edge section with nothing in it and
// returns the effective value of each field, in the form the docs write them.
func edgeDefaults(t *testing.T) map[string]string {
	t.Helper()
	cfg, err := Parse([]byte(`
jwt: {jwks_url: "http://127.0.0.1:3001/.well-known/jwks.json"}
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes:
  - {name: app, match: {path_prefix: /api}, upstream: app, auth: {jwt: required}, cors: {origins: ["*"]}, compression: {}}
  - {name: files, match: {path_prefix: /}, static: {root: dist}}
`), "defaults")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	add := func(prefix string, v any) {
		raw, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for k, val := range m {
			switch val := val.(type) {
			case []any:
				items := make([]string, len(val))
				for i, it := range val {
					items[i] = fmt.Sprint(it)
				}
				out[prefix+k] = "[" + strings.Join(items, ", ") + "]"
			default:
				out[prefix+k] = fmt.Sprint(val)
			}
		}
	}
	add("", cfg.JWT)
	add("auth.", cfg.Routes[0].Auth)
	add("cors.", cfg.Routes[0].CORS)
	add("compression.", cfg.Routes[0].Compression)
	add("static.", cfg.Routes[1].Static)
	return out
}

// sameSetting compares a rendered value with the docs' spelling of it: durations and sizes by
// value ("10m" is "10m0s", "1KiB" is "1024").
func sameSetting(got, want string) bool {
	if got == want {
		return true
	}
	if a, err := ParseDuration(got); err == nil {
		if b, err := ParseDuration(want); err == nil {
			return a == b
		}
	}
	if a, err := ParseSize(got); err == nil {
		if b, err := ParseSize(want); err == nil {
			return a == b
		}
	}
	return false
}
