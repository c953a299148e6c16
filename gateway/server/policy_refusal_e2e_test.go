package server_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/server"
)

const refusalSecret = "0123456789abcdef0123456789abcdef"

func refusalConfig(upstream string, secretRoute bool) string {
	y := fmt.Sprintf(`
access_log: {enabled: false}
jwt: {secret: %q, algorithms: [HS256]}
upstreams: {api: {targets: [%q]}}
routes:
  - {name: open, match: {path_prefix: /open}, upstream: api}
`, refusalSecret, upstream)
	if secretRoute {
		y += "  - {name: secret, match: {path_prefix: /secret}, upstream: api, auth: {jwt: required}}\n"
	}
	return y
}

// A gateway without policies refuses a configuration asking for one, at start and on reload,
// instead of serving the route without it: a route with auth would otherwise answer 200
// without a token.
func TestUnbuiltPolicyIsRefused(t *testing.T) {
	up := startUpstream(t, "api", nil)
	_, err := server.New(mustParse(t, refusalConfig(up.Addr, true)), server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "test.yaml:7:") || !strings.Contains(err.Error(), "routes[1].auth: no policy builds it (route secret)") {
		t.Fatalf("server.New with auth and no policies: %v", err)
	}

	gw := startGateway(t, refusalConfig(up.Addr, false))
	expectStatus(t, get(t, gw.URL+"/open"), 200)
	_, err = gw.Apply(mustParse(t, refusalConfig(up.Addr, true)), "test")
	var list *config.ErrorList
	if err == nil || !strings.Contains(err.Error(), "routes[1].auth: no policy builds it") {
		t.Fatalf("Apply with auth and no policies: %v", err)
	}
	if !errors.As(err, &list) || len(list.Errors()) != 1 {
		t.Fatalf("refusal is not one config error: %#v", err)
	}
	expectStatus(t, get(t, gw.URL+"/secret"), 404)
	expectStatus(t, get(t, gw.URL+"/open"), 200)
	if gw.Snapshot().Version != 1 || gw.LastReload().OK {
		t.Fatalf("version %d, last reload %+v", gw.Snapshot().Version, gw.LastReload())
	}
}
