package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// yamlBlocks returns the ```yaml code blocks of a Markdown file, each with whether the line
// before it is the marker comment.
func yamlBlocks(t *testing.T, path string) (blocks []string, marked map[int]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)(<!-- ([a-z-]+) -->\n)?```yaml\n(.*?)```")
	marked = map[int]string{}
	for i, m := range re.FindAllStringSubmatch(string(data), -1) {
		blocks = append(blocks, m[3])
		if m[2] != "" {
			marked[i] = m[2]
		}
	}
	return blocks, marked
}

// completeExample turns a documentation fragment into a whole configuration: sections it leaves
// out get minimal stand-ins, so the fragment is checked by the real loader.
func completeExample(t *testing.T, fragment string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(fragment), &doc); err != nil {
		t.Fatalf("example is not YAML: %v\n%s", err, fragment)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	if _, ok := doc["upstreams"]; !ok {
		ups := map[string]any{}
		for _, name := range []string{"app", "products", "users", "orders", "payments"} {
			ups[name] = map[string]any{"targets": []string{"127.0.0.1:3000"}}
		}
		doc["upstreams"] = ups
	}
	if _, ok := doc["routes"]; !ok {
		upstream := "app"
		if ups, ok := doc["upstreams"].(map[string]any); ok {
			names := sortedKeys(ups)
			upstream = names[0]
		}
		doc["routes"] = []any{map[string]any{"name": "app", "match": map[string]any{"path_prefix": "/"}, "upstream": upstream}}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func docEnv(name string) (string, bool) {
	return map[string]string{"ARCHWAY_ADMIN_TOKEN": "docs-example-token-0123"}[name], true
}

// TestDocumentationExamples loads every YAML example in docs/configuration.md with the real
// loader, and checks that the effective-configuration block is exactly what the loader produces.
func TestDocumentationExamples(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	blocks, marked := yamlBlocks(t, path)
	if len(blocks) < 5 {
		t.Fatalf("found %d YAML examples in %s", len(blocks), path)
	}
	var minimal *Config
	for i, b := range blocks {
		if marked[i] == "effective-minimal" {
			continue
		}
		cfg, err := ParseWithEnv(completeExample(t, b), "docs example", docEnv)
		if err != nil {
			t.Errorf("example %d in %s does not load:\n%s\n%v", i+1, path, b, err)
			continue
		}
		if strings.Contains(b, "{path_prefix: /}, upstream: app}") && len(cfg.Routes) == 1 && minimal == nil {
			minimal = cfg
		}
	}
	if minimal == nil {
		t.Fatal("the minimal example is missing")
	}
	for i, kind := range marked {
		if kind != "effective-minimal" {
			continue
		}
		if got := string(minimal.Redacted()); got != onThisPlatform(blocks[i]) {
			t.Errorf("docs/configuration.md's effective configuration is out of date; it should read:\n%s", got)
		}
	}
}

// TestRepositoryRoutesYAMLIsValid: the routes.yaml `make run` uses loads, with and without the
// environment it references.
func TestRepositoryRoutesYAMLIsValid(t *testing.T) {
	if _, err := Load(filepath.Join("..", "..", "routes.yaml")); err != nil {
		t.Fatal(err)
	}
}

// TestConsulRoutesMatchRoutes: routes.consul.yaml (make run-consul) differs from routes.yaml
// (make run) only in where targets come from; its routes are the same.
func TestConsulRoutesMatchRoutes(t *testing.T) {
	plain, err := Load(filepath.Join("..", "..", "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	consul, err := Load(filepath.Join("..", "..", "routes.consul.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := yaml.Marshal(plain.Routes)
	b, _ := yaml.Marshal(consul.Routes)
	if string(a) != string(b) {
		t.Fatalf("the routes of routes.yaml and routes.consul.yaml differ:\n%s", Diff(&Config{Routes: plain.Routes}, &Config{Routes: consul.Routes}))
	}
	for name, u := range consul.Upstreams {
		if u.Consul == nil {
			t.Errorf("upstream %s of routes.consul.yaml does not use Consul", name)
		}
	}
}
