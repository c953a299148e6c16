package runner

import (
	"bufio"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/bench/benchcert"
	"github.com/archway-gateway/archway/bench/stats"
	"github.com/archway-gateway/archway/internal/testenv"
)

// TestEveryScenarioHasEveryPeer: each scenario runs Archway and every peer, except where a
// peer cannot do the work, and then the report says why (a note naming it).
func TestEveryScenarioHasEveryPeer(t *testing.T) {
	for _, s := range scenarios(false) {
		var labels []string
		for _, c := range s.contenders {
			labels = append(labels, c.label)
		}
		if !slices.Contains(labels, stats.Archway) {
			t.Errorf("%s: no Archway", s.name)
		}
		for _, peer := range stats.Peers {
			if slices.Contains(labels, peer) {
				continue
			}
			explained := false
			for _, n := range s.notes {
				if strings.HasPrefix(strings.ToLower(n), peer+":") {
					explained = true
				}
			}
			if !explained {
				t.Errorf("%s: %s left out without a note", s.name, peer)
			}
		}
	}
}

// TestScenarioRoutesParse: the rewrites of bench/routes.yaml the access log and TLS scenarios
// make still parse and turn on what they should, so an edit of bench/routes.yaml cannot
// silently break them.
func TestScenarioRoutesParse(t *testing.T) {
	dir := t.TempDir()
	cert, err := benchcert.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{cfg: Config{Repo: testenv.RepoRoot()}, cert: cert, env: map[string]string{
		"BENCH_LISTEN": "127.0.0.1:18080", "BENCH_ADMIN": "127.0.0.1:19901", "BENCH_UPSTREAM_1": "127.0.0.1:18001",
		"BENCH_UPSTREAM_2": "127.0.0.1:18002", "BENCH_PRODUCTS_1": "127.0.0.1:18003", "BENCH_PRODUCTS_2": "127.0.0.1:18004"}}
	for _, s := range []*scenario{{name: "plain"}, {name: stats.ScenarioAccessLog, accessLog: true}, {name: stats.ScenarioTLS, tls: true}, {name: stats.ScenarioH2C, h2c: true}} {
		src, err := r.routesFor(s, dir)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := r.parseRoutes(src)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := cfg.AccessLog.On(); got != s.accessLog {
			t.Errorf("%s: access log on = %v", s.name, got)
		}
		if s.accessLog && cfg.AccessLog.Output != filepath.Join(dir, "access.log") {
			t.Errorf("%s: access log output %q", s.name, cfg.AccessLog.Output)
		}
		tls := len(cfg.Server.Listeners) == 1 && cfg.Server.Listeners[0].TLS != nil
		if tls != s.tls {
			t.Errorf("%s: TLS listener = %v (%+v)", s.name, tls, cfg.Server.Listeners)
		}
		h2c := len(cfg.Server.Listeners) == 1 && cfg.Server.Listeners[0].TLS == nil && cfg.Server.Listeners[0].HTTP2On()
		if h2c != s.h2c {
			t.Errorf("%s: h2c listener = %v (%+v)", s.name, h2c, cfg.Server.Listeners)
		}
	}
}

// TestTracedRoutesParse: the tracing scenario's contender gets tracing on, every request
// sampled, to the collector it was given; the plain contender's file has no tracing.
func TestTracedRoutesParse(t *testing.T) {
	r := &Runner{cfg: Config{Repo: testenv.RepoRoot()}, env: map[string]string{
		"BENCH_LISTEN": "127.0.0.1:18080", "BENCH_ADMIN": "127.0.0.1:19901", "BENCH_UPSTREAM_1": "127.0.0.1:18001",
		"BENCH_UPSTREAM_2": "127.0.0.1:18002", "BENCH_PRODUCTS_1": "127.0.0.1:18003", "BENCH_PRODUCTS_2": "127.0.0.1:18004"}}
	src, err := r.routesFor(&scenario{name: stats.ScenarioTracing}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := r.parseRoutes(src)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Server.Tracing.On() {
		t.Errorf("the untraced contender has tracing on")
	}
	traced, err := tracedRoutes(src, "http://127.0.0.1:4318")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := r.parseRoutes(traced)
	if err != nil {
		t.Fatalf("%v\n%s", err, traced)
	}
	tr := cfg.Server.Tracing
	if !tr.On() || tr.SampleRatio != 1 || tr.Endpoint != "http://127.0.0.1:4318" || tr.Protocol != "http/protobuf" {
		t.Errorf("traced contender's tracing: %+v", tr)
	}
}

// TestParseSpanCounts reads the export counters from a /metrics page as the admin API writes it.
func TestParseSpanCounts(t *testing.T) {
	page := `# HELP archway_tracing_spans_dropped_total Spans lost.
# TYPE archway_tracing_spans_dropped_total counter
archway_tracing_spans_dropped_total{reason="export_failed"} 3
archway_tracing_spans_dropped_total{reason="queue_full"} 1.5e+06
archway_tracing_spans_dropped_total{reason="shutdown"} 0
# TYPE archway_tracing_spans_exported_total counter
archway_tracing_spans_exported_total 123456
archway_requests_total{route="plain"} 99
`
	c, err := parseSpanCounts(bufio.NewScanner(strings.NewReader(page)))
	if err != nil {
		t.Fatal(err)
	}
	if c.exported != 123456 || c.dropped != 1500003 {
		t.Errorf("got %+v", c)
	}
	if _, err := parseSpanCounts(bufio.NewScanner(strings.NewReader("archway_requests_total 1\n"))); err == nil {
		t.Error("a page without the counters was read as zero")
	}
}

// TestIdleWebSocketsDoNotWaitForParking: this build's idle keep-alive connections are measured
// once parked (by default and as archway-park), but idle WebSockets never park, and waiting for
// them ended a whole run.
func TestIdleWebSocketsDoNotWaitForParking(t *testing.T) {
	for _, tc := range []struct {
		label string
		ws    bool
		want  bool
	}{
		{stats.ArchwayPark, false, true},
		{stats.ArchwayPark, true, false},
		{stats.Archway, false, true}, // parks by default (server.idle_park_after: 5s)
		{stats.Archway, true, false},
		{"archway-ww", false, true},
		{stats.ArchwayBefore, false, false},
		{stats.Nginx, false, false},
		{stats.Nginx, true, false},
	} {
		if got := waitsForParking(tc.label, tc.ws); got != tc.want {
			t.Errorf("waitsForParking(%s, websocket %v) = %v, want %v", tc.label, tc.ws, got, tc.want)
		}
	}
}
