package config

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestHTTP2Settings(t *testing.T) {
	const tail = `
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no streams", "server:\n  http2: {max_concurrent_streams: 0}\n", ""}, // 0 is the default
		{"negative streams", "server:\n  http2: {max_concurrent_streams: -1}\n", "server.http2.max_concurrent_streams: must be between 1 and 1048576"},
		{"tiny header list", "server:\n  http2: {max_header_list_bytes: 100}\n", "server.http2.max_header_list_bytes: must be between 1KiB and 16MiB"},
		{"window below HTTP/2's", "server:\n  http2: {max_upload_buffer_per_stream: 1KiB}\n", "server.http2.max_upload_buffer_per_stream: must be between 65535 bytes"},
		{"connection below stream", "server:\n  http2: {max_upload_buffer_per_stream: 8MiB}\n", "server.http2.max_upload_buffer_per_connection: must be at least max_upload_buffer_per_stream"},
		{"misspelt field", "server:\n  http2: {max_concurent_streams: 10}\n", "max_concurent_streams"},
		{"native engine", "server:\n  http2: {engine: native}\n", ""},
		{"xnet engine", "server:\n  http2: {engine: xnet}\n", ""},
		{"unknown engine", "server:\n  http2:\n    engine: nativ\n", `routes.yaml:3:13: server.http2.engine: must be native or xnet, got "nativ" (did you mean "native"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml+tail), "routes.yaml")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "routes.yaml:") {
				t.Errorf("error does not name the file and line: %v", err)
			}
		})
	}

	cfg, err := Parse([]byte(`
server:
  max_header_bytes: 32KiB
  idle_timeout: 2m
  listeners:
    - {name: plain, addr: ":80"}
    - {name: h2c, addr: ":81", http2: true}
    - {name: tls, addr: ":443", tls: {certificates: [{cert: c, key: k}]}}
    - {name: tls-h1, addr: ":444", tls: {certificates: [{cert: c, key: k}]}, http2: false}
`+tail), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var on []bool
	for _, l := range cfg.EffectiveListeners() {
		on = append(on, l.HTTP2On())
	}
	if !reflect.DeepEqual(on, []bool{false, true, true, false}) {
		t.Errorf("http2 per listener %v", on)
	}
	h := cfg.Server.HTTP2
	if h.MaxConcurrentStreams != 250 || h.MaxHeaderListBytes != 32<<10 || h.IdleTimeout.D() != 2*time.Minute || h.ReadTimeout.D() != 30*time.Second {
		t.Errorf("defaults %+v", h)
	}
	if h.Engine != DefaultHTTP2Engine {
		t.Errorf("engine %q, want the default %q", h.Engine, DefaultHTTP2Engine)
	}
}

// TestHTTP2Documented: every server.http2 field is in docs/configuration.md's HTTP/2 table.
func TestHTTP2Documented(t *testing.T) {
	text := edgeDocSections(t)["HTTP/2"]
	rowRE := regexp.MustCompile("(?m)^\\| `([a-z_.0-9]+)` \\|")
	documented := map[string]bool{}
	for _, m := range rowRE.FindAllStringSubmatch(text, -1) {
		documented[m[1]] = true
	}
	typ := reflect.TypeFor[HTTP2]()
	for i := range typ.NumField() {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if !documented[tag] {
			t.Errorf("server.http2.%s is not in the HTTP/2 table", tag)
		}
	}
}
