package stack_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/stack"
	"github.com/archway-gateway/archway/internal/testenv"
)

// TestShopperJourneyTraced runs the shopper journey with every process tracing into a real
// Jaeger, at 100 %, and reads the payment's trace back through Jaeger's query API the way an
// operator follows a request: from its access log line's trace_id. The trace is one tree rooted
// at the gateway's server span, down to the payment provider call, with every parent present.
// Then the collector dies: requests still succeed, and the gateway counts the spans it lost.
func TestShopperJourneyTraced(t *testing.T) {
	j := testenv.StartJaeger(t)
	s := startStack(t, false, func(o *stack.Options) {
		o.OTLPEndpoint = j.OTLPHTTP
		// The services export within 200 ms and give up on a collector that is gone within 2 s.
		o.Env = append(o.Env, "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_BSP_EXPORT_TIMEOUT=2000")
	})
	shopperJourney(t, s)

	// The payment request, from the gateway's access log to its trace.
	pay := waitAccessLine(t, s, regexp.MustCompile(`^/api/orders/\d+/pay$`), 200)
	tr := waitTrace(t, j, pay.TraceID, func(tr testenv.JaegerTrace) bool {
		return len(orphans(tr)) == 0 && findSpan(tr, "payments", "provider charge") != nil
	})
	byID := map[string]testenv.JaegerSpan{}
	for _, sp := range tr.Spans {
		byID[sp.SpanID] = sp
	}
	service := func(sp testenv.JaegerSpan) string { return tr.Processes[sp.ProcessID].ServiceName }

	var roots []testenv.JaegerSpan
	for _, sp := range tr.Spans {
		if sp.Parent() == "" {
			roots = append(roots, sp)
		}
	}
	if len(roots) != 1 || service(roots[0]) != "archway" || kind(roots[0]) != "server" {
		t.Fatalf("want one root, the gateway's server span; got %s", describeSpans(tr, roots))
	}
	root := roots[0]
	if root.SpanID != pay.SpanID {
		t.Errorf("the access log names span %s, the trace's root is %s", pay.SpanID, root.SpanID)
	}
	if v, _ := root.Tag("http.response.status_code"); fmt.Sprint(v) != "200" {
		t.Errorf("root span status %v, want 200", v)
	}
	if v, _ := root.Tag("archway.route"); v != "orders" {
		t.Errorf("root span route %v, want orders", v)
	}

	// From the provider call up to the root: each hop is the span the one below says is its
	// parent, and the services come in the order the request crossed them.
	var path []string
	for sp := findSpan(tr, "payments", "provider charge"); sp != nil; {
		path = append(path, service(*sp)+":"+kind(*sp))
		parent, ok := byID[sp.Parent()]
		if !ok {
			break
		}
		sp = &parent
	}
	want := []string{"payments:client", "payments:server", "orders:client", "orders:server", "archway:client", "archway:server"}
	if !containsInOrder(path, want) || path[len(path)-1] != "archway:server" {
		t.Fatalf("provider call to root crosses %v, want %v in that order\n%s", path, want, describeSpans(tr, tr.Spans))
	}
	if db := findSpanPrefix(tr, "payments", "UPDATE payments"); db == nil {
		t.Errorf("no database span of payments in the trace\n%s", describeSpans(tr, tr.Spans))
	} else if _, hasQuery := db.Tag("db.query.text"); hasQuery {
		t.Errorf("a database span carries its statement text")
	}

	// Every log line the services wrote for this request carries its trace id.
	lines := 0
	for _, line := range strings.Split(s.output(), "\n") {
		name, body, ok := strings.Cut(line, " | ")
		if !ok || !strings.Contains(body, `"msg":"request"`) || !strings.Contains(body, pay.TraceID) {
			continue
		}
		name = strings.TrimSpace(name)
		if strings.HasPrefix(name, "orders") || name == "payments" {
			lines++
			if !strings.Contains(body, `"span_id":"`) {
				t.Errorf("%s logged the request without its span id: %s", name, body)
			}
		}
	}
	if lines < 2 {
		t.Errorf("%d service log lines carry trace %s, want orders' and payments'", lines, pay.TraceID)
	}

	// The services count what they sent.
	metricsURL := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", port) }
	waitMetricAt(t, metricsURL(s.opts.Ports.Payments), `payments_tracing_spans_exported_total`, func(v float64) bool { return v > 0 })

	// The collector goes away: requests are answered as before, and the gateway and the
	// services drop and count the spans they can no longer send.
	j.Kill()
	for i := range 20 {
		var all []map[string]any
		if code := call(t, "GET", s.gw+"/api/products", "", "198.51.100."+strconv.Itoa(i+1), nil, &all); code != 200 || len(all) != 10 {
			t.Fatalf("with the collector down, GET /api/products: %d, %d products", code, len(all))
		}
	}
	dropped := waitMetric(t, s, `archway_tracing_spans_dropped_total{reason="export_failed"}`, func(v float64) bool { return v > 0 })
	// The gateway balances over two products instances: their drops together.
	productsDropped := waitMetricSum(t, []string{metricsURL(s.opts.Ports.Products1), metricsURL(s.opts.Ports.Products2)},
		`products_tracing_spans_dropped_total{reason="export_failed"}`, func(v float64) bool { return v > 0 })
	t.Logf("collector down: the gateway dropped and counted %v spans, products %v; every request answered", dropped, productsDropped)
}

// TestTracesOverOTLPgRPC: the gateway and a service export over OTLP/gRPC (the journey test
// uses OTLP/HTTP) to Jaeger's gRPC receiver, and a product page's trace is read back through
// Jaeger's query API: the gateway's server span, its client span, products' server span and
// its database span, each the child of the one before.
func TestTracesOverOTLPgRPC(t *testing.T) {
	j := testenv.StartJaeger(t)
	const endpoint = `    endpoint: "${ARCHWAY_OTLP_ENDPOINT:-http://127.0.0.1:4318}"` + "\n"
	edited := false
	s := startStackWith(t, false, func(cfg []byte) []byte {
		out := strings.Replace(string(cfg), endpoint, endpoint+"    protocol: grpc\n", 1)
		edited = out != string(cfg)
		return []byte(out)
	}, func(o *stack.Options) {
		o.OTLPEndpoint = j.OTLPGRPC
		o.Env = append(o.Env, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_BSP_SCHEDULE_DELAY=200")
	})
	if !edited {
		t.Fatalf("routes.yaml has no line %q: the test could not set protocol: grpc", endpoint)
	}
	var p map[string]any
	if code := call(t, "GET", s.gw+"/api/products/1", "", "198.51.100.7", nil, &p); code != 200 {
		t.Fatalf("GET /api/products/1: %d", code)
	}
	line := waitAccessLine(t, s, regexp.MustCompile(`^/api/products/1$`), 200)
	tr := waitTrace(t, j, line.TraceID, func(tr testenv.JaegerTrace) bool {
		return len(orphans(tr)) == 0 && findSpanPrefix(tr, "products", "SELECT products") != nil
	})
	byID := map[string]testenv.JaegerSpan{}
	for _, sp := range tr.Spans {
		byID[sp.SpanID] = sp
	}
	var path []string
	for sp := findSpanPrefix(tr, "products", "SELECT products"); sp != nil; {
		path = append(path, tr.Processes[sp.ProcessID].ServiceName+":"+kind(*sp))
		parent, ok := byID[sp.Parent()]
		if !ok {
			break
		}
		sp = &parent
	}
	want := []string{"products:client", "products:server", "archway:client", "archway:server"}
	if strings.Join(path, " ") != strings.Join(want, " ") {
		t.Fatalf("database span to root crosses %v, want %v\n%s", path, want, describeSpans(tr, tr.Spans))
	}
	if root := byID[line.SpanID]; root.Parent() != "" || kind(root) != "server" {
		t.Errorf("the access log's span %s is not the trace's root server span\n%s", line.SpanID, describeSpans(tr, tr.Spans))
	}
}

type accessLine struct {
	Path    string `json:"path"`
	Status  int    `json:"status"`
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// waitAccessLine returns the gateway's access log line of a request to a path matching re that
// got status, once the log has flushed it.
func waitAccessLine(t *testing.T, s *running, re *regexp.Regexp, status int) accessLine {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(s.output()))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, body, ok := strings.Cut(sc.Text(), " | ")
			if !ok || strings.TrimSpace(name) != "gateway" || !strings.Contains(body, `"msg":"request"`) {
				continue
			}
			var l accessLine
			if json.Unmarshal([]byte(body), &l) == nil && re.MatchString(l.Path) && l.Status == status {
				if len(l.TraceID) != 32 || len(l.SpanID) != 16 {
					t.Fatalf("access log line without trace ids: %s", body)
				}
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for %s with status %d", re, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitTrace polls Jaeger until the trace satisfies done: spans arrive from each process's
// exporter on its own schedule.
func waitTrace(t *testing.T, j *testenv.Jaeger, id string, done func(testenv.JaegerTrace) bool) testenv.JaegerTrace {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		tr, err := j.Trace(id)
		if err == nil && done(tr) {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s incomplete after 60 s (%v); orphans %v\n%s", id, err, orphans(tr), describeSpans(tr, tr.Spans))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// orphans are the spans whose parent is not in the trace.
func orphans(tr testenv.JaegerTrace) []string {
	ids := map[string]bool{}
	for _, sp := range tr.Spans {
		ids[sp.SpanID] = true
	}
	var out []string
	for _, sp := range tr.Spans {
		if p := sp.Parent(); p != "" && !ids[p] {
			out = append(out, sp.OperationName)
		}
	}
	return out
}

func findSpan(tr testenv.JaegerTrace, service, op string) *testenv.JaegerSpan {
	for i, sp := range tr.Spans {
		if sp.OperationName == op && tr.Processes[sp.ProcessID].ServiceName == service {
			return &tr.Spans[i]
		}
	}
	return nil
}

func findSpanPrefix(tr testenv.JaegerTrace, service, prefix string) *testenv.JaegerSpan {
	for i, sp := range tr.Spans {
		if strings.HasPrefix(sp.OperationName, prefix) && tr.Processes[sp.ProcessID].ServiceName == service {
			return &tr.Spans[i]
		}
	}
	return nil
}

func kind(sp testenv.JaegerSpan) string {
	v, _ := sp.Tag("span.kind")
	return fmt.Sprint(v)
}

func containsInOrder(path, want []string) bool {
	i := 0
	for _, p := range path {
		if i < len(want) && p == want[i] {
			i++
		}
	}
	return i == len(want)
}

func describeSpans(tr testenv.JaegerTrace, spans []testenv.JaegerSpan) string {
	var b strings.Builder
	for _, sp := range spans {
		fmt.Fprintf(&b, "  %s %s %-10s %-28q parent %s\n", sp.SpanID, kind(sp), tr.Processes[sp.ProcessID].ServiceName, sp.OperationName, sp.Parent())
	}
	return b.String()
}

// waitMetric polls the gateway's /metrics until the sample named series satisfies ok.
func waitMetric(t *testing.T, s *running, series string, ok func(float64) bool) float64 {
	t.Helper()
	return waitMetricSum(t, []string{fmt.Sprintf("http://127.0.0.1:%d/metrics", s.opts.Ports.Admin)}, series, ok)
}

// waitMetricAt polls a process's /metrics at url until the sample named series satisfies ok.
func waitMetricAt(t *testing.T, url, series string, ok func(float64) bool) float64 {
	t.Helper()
	return waitMetricSum(t, []string{url}, series, ok)
}

// waitMetricSum polls the /metrics pages at urls until the sum of the samples named series
// satisfies ok.
func waitMetricSum(t *testing.T, urls []string, series string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := -1.0
	for {
		sum, seen := 0.0, 0
		for _, url := range urls {
			resp, err := http.Get(url)
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(body), "\n") {
				if v, found := strings.CutPrefix(line, series+" "); found {
					f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					sum += f
					seen++
				}
			}
		}
		if seen > 0 {
			last = sum
			if ok(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after 90 s", series, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
