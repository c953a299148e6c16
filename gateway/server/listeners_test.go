package server

import (
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/h2"
)

// server.http2.engine reaches h2.Settings: a mapping that dropped it would serve every
// connection with the zero Engine, whatever the configuration says.
func TestHTTP2SettingsEngine(t *testing.T) {
	engines := map[config.HTTP2Engine]h2.Engine{
		config.HTTP2EngineNative: h2.EngineNative,
		config.HTTP2EngineXNet:   h2.EngineXNet,
	}
	for _, written := range []config.HTTP2Engine{"", config.HTTP2EngineNative, config.HTTP2EngineXNet} {
		server := ""
		if written != "" {
			server = "server: {http2: {engine: " + string(written) + "}}\n"
		}
		cfg, err := config.Parse([]byte(server+`
upstreams: {app: {targets: ["127.0.0.1:3000"]}}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`), "routes.yaml")
		if err != nil {
			t.Fatal(err)
		}
		want := engines[written]
		if written == "" {
			want = engines[config.DefaultHTTP2Engine]
		}
		if got := http2Settings(cfg).Engine; got != want {
			t.Errorf("engine %q: h2 engine %d, want %d", written, got, want)
		}
	}
	// A Config not built by the loader (engine empty) gets the loader's default.
	if got, want := http2Settings(&config.Config{}).Engine, engines[config.DefaultHTTP2Engine]; got != want {
		t.Errorf("empty engine: h2 engine %d, want %d", got, want)
	}
}
