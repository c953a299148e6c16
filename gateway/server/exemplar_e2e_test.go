package server_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// TestLatencyHistogramCarriesTraceExemplars: with tracing on, the request-duration histogram
// scraped as OpenMetrics (as Prometheus asks for it) carries the trace id of a traced request as
// an exemplar on the bucket the request fell in, so a dashboard jumps from a slow bucket to the
// trace. A plain-text scrape (an old Prometheus) carries none. No collector is needed: the spans
// are dropped, the exemplar is not.
func TestLatencyHistogramCarriesTraceExemplars(t *testing.T) {
	app := startUpstream(t, "app", nil)
	reg := prometheus.NewRegistry()
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
server:
  tracing: {endpoint: "http://%s", batch_timeout: 100ms, export_timeout: 200ms}
upstreams:
  app: {targets: [%q]}
routes:
  - {name: app, match: {path_prefix: /app}, upstream: app}
`, testenv.FreeAddr(t), app.Addr), func(o *server.Options) { o.Registerer = reg })
	adm := adminServer(t, gw, reg)

	expectStatus(t, get(t, gw.URL+"/app/x"), 200)
	traceID, _, flags := upstreamTraceparent(t, app)
	if flags != "01" {
		t.Fatalf("the request was not sampled (flags %s)", flags)
	}

	scrape := func(accept string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", adm.URL+"/metrics", nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	exemplar := regexp.MustCompile(`(?m)^archway_request_duration_seconds_bucket\{[^}]*route="app"[^}]*\} 1 # \{trace_id="([0-9a-f]{32})"\} [0-9.e+-]+`)
	om := scrape("application/openmetrics-text; version=1.0.0")
	m := exemplar.FindStringSubmatch(om)
	if m == nil {
		t.Fatalf("no exemplar on route app's duration buckets in the OpenMetrics scrape:\n%s", grepLines(om, "archway_request_duration_seconds_bucket"))
	}
	if m[1] != traceID {
		t.Fatalf("exemplar trace_id %s, want the request's trace %s", m[1], traceID)
	}
	if plain := scrape("text/plain"); regexp.MustCompile(`trace_id=`).MatchString(plain) {
		t.Fatalf("a text-format scrape carries exemplars, which that format cannot hold")
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []byte
	for _, l := range regexp.MustCompile(`(?m)^.*$`).FindAllString(s, -1) {
		if regexp.MustCompile(regexp.QuoteMeta(sub)).MatchString(l) {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return string(out)
}
