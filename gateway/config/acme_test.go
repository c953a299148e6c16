package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func acmeConfig(acme string) string {
	return `
server:
  listeners:
    - {name: http, addr: ":80"}
    - name: https
      addr: ":443"
      tls:
        acme: ` + acme + `
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes: [{name: app, match: {path_prefix: /}, upstream: app}]
`
}

func TestACMEValidation(t *testing.T) {
	for _, tc := range []struct {
		name, acme, want string
	}{
		{"minimal", `{hosts: [shop.example.com]}`, ""},
		{"upper case and trailing dot", `{hosts: [Shop.Example.COM.]}`, ""},
		{"bad email", `{email: "ops at example", hosts: [shop.example.com]}`, "test.yaml:8:23: server.listeners[1].tls.acme.email: invalid email address"},
		{"email with a display name", `{email: "Ops <ops@example.com>", hosts: [shop.example.com]}`, "tls.acme.email: invalid email address"},
		{"no hosts", `{email: ops@example.com}`, "tls.acme.hosts: at least one host name is required"},
		{"empty hosts", `{hosts: []}`, "tls.acme.hosts: at least one host name is required"},
		{"wildcard", `{hosts: ["*.example.com"]}`, "tls.acme.hosts[0]: wildcard"},
		{"IP", `{hosts: [192.0.2.1]}`, "tls.acme.hosts[0]: \"192.0.2.1\" is an IP address"},
		{"port", `{hosts: ["shop.example.com:443"]}`, "tls.acme.hosts[0]: invalid host name"},
		{"single label", `{hosts: [localhost]}`, "tls.acme.hosts[0]: \"localhost\" is not a fully qualified name"},
		{"duplicate", `{hosts: [a.example.com, A.example.com]}`, "tls.acme.hosts[1]: duplicate host"},
		{"plain directory", `{hosts: [a.example.com], directory: "http://ca.example.com/dir"}`, "tls.acme.directory: must be the https:// URL"},
		{"zero renew_before", `{hosts: [a.example.com], renew_before: 0s}`, "tls.acme.renew_before: must be greater than 0"},
		{"unknown challenge", `{hosts: [a.example.com], challenges: [dns-01]}`, "tls.acme.challenges[0]: must be http-01 or tls-alpn-01"},
		{"unknown field", `{hosts: [a.example.com], domains: [b.example.com]}`, "domains"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(acmeConfig(tc.acme)), "test.yaml")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestACMEHTTP01AloneNeedsAPlainListener(t *testing.T) {
	_, err := Parse([]byte(`
server:
  listeners:
    - name: https
      addr: ":443"
      tls: {acme: {hosts: [a.example.com], challenges: [http-01]}}
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes: [{name: app, match: {path_prefix: /}, upstream: app}]
`), "test.yaml")
	if err == nil || !strings.Contains(err.Error(), "server.listeners[0].tls.acme.challenges: http-01 alone needs a plain listener") {
		t.Fatalf("got %v", err)
	}
}

func TestACMEOnTheAdminListenerIsRefused(t *testing.T) {
	_, err := Parse([]byte(`
admin: {tls: {acme: {hosts: [a.example.com]}}}
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes: [{name: app, match: {path_prefix: /}, upstream: app}]
`), "test.yaml")
	if err == nil || !strings.Contains(err.Error(), "admin.tls.acme: applies to public listeners") {
		t.Fatalf("got %v", err)
	}
}

func TestACMEDefaults(t *testing.T) {
	cfg, err := Parse([]byte(acmeConfig(`{hosts: [Shop.Example.com]}`)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := *cfg.Server.Listeners[1].TLS.ACME
	want := ACME{
		Hosts:       []string{"shop.example.com"},
		Directory:   DefaultACMEDirectory,
		Storage:     DefaultACMEStorage,
		RenewBefore: Duration(30 * 24 * time.Hour),
		Challenges:  []ACMEChallenge{ChallengeHTTP01, ChallengeTLSALPN01},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

// TestACMEDocumentation holds the "Automatic certificates (ACME)" section of
// docs/configuration.md to the loader: the example loads, every field is in the table, and
// every default the table states is the one the loader fills in.
func TestACMEDocumentation(t *testing.T) {
	text, ok := edgeDocSections(t)["Automatic certificates (ACME)"]
	if !ok {
		t.Fatal("docs/configuration.md has no \"Automatic certificates (ACME)\" section")
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(text, -1)
	if len(blocks) == 0 {
		t.Fatal("no YAML example")
	}
	for _, b := range blocks {
		if _, err := ParseWithEnv(completeEdgeExample(t, b[1]), "docs", func(string) (string, bool) { return "", false }); err != nil {
			t.Errorf("example does not load:\n%s\n%v", b[1], err)
		}
	}
	// The operations guide's ACME examples load too.
	ops, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	opsExamples := 0
	for _, b := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(ops), -1) {
		if !strings.Contains(b[1], "acme:") {
			continue
		}
		opsExamples++
		if _, err := ParseWithEnv(completeEdgeExample(t, b[1]), "docs", func(string) (string, bool) { return "", false }); err != nil {
			t.Errorf("docs/operations.md example does not load:\n%s\n%v", b[1], err)
		}
	}
	if opsExamples == 0 {
		t.Error("docs/operations.md has no ACME example")
	}
	cfg, err := Parse([]byte(acmeConfig(`{hosts: [a.example.com]}`)), "defaults")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Server.Listeners[1].TLS.ACME
	effective := map[string]string{
		"directory":    a.Directory,
		"storage":      a.Storage,
		"renew_before": a.RenewBefore.String(),
		"challenges":   "[" + strings.Join(names(a.Challenges), ", ") + "]",
	}
	documented := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `tls\\.acme\\.([a-z_]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(text, -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	typ := reflect.TypeFor[ACME]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		def, ok := documented[name]
		if !ok {
			t.Errorf("tls.acme.%s is not in the table", name)
			continue
		}
		if strings.Count(def, "`") != 2 || !strings.HasPrefix(def, "`") || !strings.HasSuffix(def, "`") {
			continue
		}
		if got := effective[name]; !sameSetting(got, strings.Trim(def, "`")) {
			t.Errorf("the docs say tls.acme.%s defaults to %s; the loader fills in %q", name, def, got)
		}
	}
}
