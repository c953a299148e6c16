package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func parseUpstream(up string) (*Config, error) {
	return Parse([]byte("upstreams:\n  app: "+up+"\nroutes: [{name: app, match: {path_prefix: /}, upstream: app}]\n"), "routes.yaml")
}

func TestUpstreamTLS(t *testing.T) {
	for _, tc := range []struct {
		in      string
		targets []string
		want    *UpstreamTLS
	}{
		{`{targets: ["127.0.0.1:3000"]}`, []string{"127.0.0.1:3000"}, nil},
		{`{targets: ["http://127.0.0.1:3000", "HTTP://shop.test"]}`, []string{"127.0.0.1:3000", "shop.test:80"}, nil},
		{`{targets: ["https://products.internal:8443", "https://products-2.internal/"]}`, []string{"products.internal:8443", "products-2.internal:443"},
			&UpstreamTLS{MinVersion: "1.2"}},
		{`{targets: ["https://[::1]"]}`, []string{"[::1]:443"}, &UpstreamTLS{MinVersion: "1.2"}},
		{`{targets: ["10.0.0.1:3004"], tls: {ca_file: /ca.pem, server_name: payments.internal, cert_file: /c.pem, key_file: /k.pem, min_version: "1.3"}}`,
			[]string{"10.0.0.1:3004"}, &UpstreamTLS{CAFile: "/ca.pem", ServerName: "payments.internal", CertFile: "/c.pem", KeyFile: "/k.pem", MinVersion: "1.3"}},
		{`{targets: ["https://10.0.0.1:3004"], tls: {insecure_skip_verify: true}}`, []string{"10.0.0.1:3004"}, &UpstreamTLS{MinVersion: "1.2", InsecureSkipVerify: true}},
	} {
		cfg, err := parseUpstream(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		u := cfg.Upstreams["app"]
		var got []string
		for _, tg := range u.Targets {
			got = append(got, tg.Addr)
		}
		if !reflect.DeepEqual(got, tc.targets) {
			t.Errorf("%s: targets %q, want %q", tc.in, got, tc.targets)
		}
		if !reflect.DeepEqual(u.TLS, tc.want) {
			t.Errorf("%s: tls %+v, want %+v", tc.in, u.TLS, tc.want)
		}
		// What GET /config shows loads back to the same configuration (PUT /config).
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out, "again.yaml")
		if err != nil {
			t.Errorf("%s: the effective configuration does not load back:\n%s\n%v", tc.in, out, err)
		} else if !reflect.DeepEqual(again.Upstreams["app"].TLS, u.TLS) || !reflect.DeepEqual(again.Upstreams["app"].Targets, u.Targets) {
			t.Errorf("%s: the effective configuration loads back differently", tc.in)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{`{targets: ["https://a.test:443", "http://b.test:80"]}`, "routes.yaml:2:41: upstreams.app.targets[1]: is http:// but the upstream's other targets are https://"},
		{`{targets: ["http://a.test:80"], tls: {}}`, "upstreams.app.targets[0]: is http:// but the upstream has a tls section"},
		{`{targets: ["ftp://a.test:21"]}`, "only http:// and https:// targets are supported"},
		{`{targets: ["https://a.test/api"]}`, `invalid target "a.test/api"`},
		{`{targets: ["a.test:443"], tls: {cert_file: /c.pem}}`, "upstreams.app.tls.key_file: required with cert_file"},
		{`{targets: ["a.test:443"], tls: {key_file: /k.pem}}`, "upstreams.app.tls.cert_file: required with key_file"},
		{`{targets: ["a.test:443"], tls: {min_version: "1.1"}}`, `upstreams.app.tls.min_version: must be 1.2 or 1.3, got "1.1"`},
		{`{targets: ["a.test:443"], tls: {server_name: "a.test/x"}}`, "upstreams.app.tls.server_name: must be a host name"},
		{`{targets: ["a.test:443"], tls: {insecure_skip_verify: true, ca_file: /ca.pem}}`, "upstreams.app.tls.insecure_skip_verify: contradicts ca_file"},
		{`{targets: ["a.test:443"], tls: {ca: /ca.pem}}`, `unknown field "ca"`},
	} {
		_, err := parseUpstream(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestUpstreamTLSFilesAreRelativeToTheConfiguration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(path, []byte(`
upstreams:
  app: {targets: ["https://a.test"], tls: {ca_file: ssl/ca.pem, cert_file: /abs/c.pem, key_file: ssl/k.pem}}
routes: [{name: app, match: {path_prefix: /}, upstream: app}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Upstreams["app"].TLS
	if got.CAFile != filepath.Join(dir, "ssl/ca.pem") || got.CertFile != "/abs/c.pem" || got.KeyFile != filepath.Join(dir, "ssl/k.pem") {
		t.Fatalf("files %q %q %q: relative paths are relative to the file's directory", got.CAFile, got.CertFile, got.KeyFile)
	}
}

// TestUpstreamTLSDocumentation: every field of the tls section is in the upstreams table of
// docs/configuration.md, with the default the loader fills in.
func TestUpstreamTLSDocumentation(t *testing.T) {
	text := edgeDocSections(t)["upstreams"]
	documented := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(text, -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	cfg, err := parseUpstream(`{targets: ["https://a.test"]}`)
	if err != nil {
		t.Fatal(err)
	}
	effective := reflect.ValueOf(*cfg.Upstreams["app"].TLS)
	typ := reflect.TypeFor[UpstreamTLS]()
	for i := range typ.NumField() {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if tag == "" {
			continue // unexported
		}
		def, ok := documented["tls."+tag]
		if !ok {
			t.Errorf("upstreams: tls.%s is not in the table", tag)
			continue
		}
		if strings.Count(def, "`") != 2 || !strings.HasPrefix(def, "`") {
			continue // a default in words ("system roots")
		}
		if got := reflect.ValueOf(effective.Field(i).Interface()); strings.Trim(def, "`") != toString(got) {
			t.Errorf("upstreams: the docs say tls.%s defaults to %s; the loader fills in %v", tag, def, got)
		}
	}
}

func toString(v reflect.Value) string {
	if v.Kind() == reflect.Bool {
		if v.Bool() {
			return "true"
		}
		return "false"
	}
	return v.String()
}
