package runner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/archway-gateway/archway/bench/stats"
	"github.com/archway-gateway/archway/internal/stack"
)

// The tracing scenario (issue 14): Archway with tracing on, every request sampled, exporting
// OTLP/HTTP to a real Jaeger, against the same binary with tracing off. The collector runs on
// the load generator's side (its CPU in placement A), so the proxy's CPU time is the proxy's
// own work: recording spans, encoding them and sending them.

// tracingNotes say why the peers are not in the tracing scenario.
func tracingNotes() []string {
	var out []string
	for _, p := range stats.Peers {
		out = append(out, p+": not compared. The scenario measures what tracing costs Archway itself: the same build with tracing on (archway-traced: server.tracing, sample_ratio 1, OTLP/HTTP to Jaeger on the load generator's CPU) against tracing off (archway).")
	}
	return append(out, "spans_exported_per_req and spans_dropped_per_req are read from archway-traced's /metrics after each run, once its export queue has drained: about 2 exported (a server and a client span) and 0 dropped means every request was traced in full.")
}

// tracedRoutes is routes with tracing on in server: every request sampled, sent to the
// collector's OTLP/HTTP endpoint. The queue holds a few runs' worth of bursts, so a drop means
// the collector could not keep up, not that a burst overflowed a small queue.
func tracedRoutes(routes []byte, endpoint string) ([]byte, error) {
	const anchor = "  security_headers: {}\n"
	if !bytes.Contains(routes, []byte(anchor)) {
		return nil, fmt.Errorf("bench/routes.yaml: %q not found (the tracing scenario adds server.tracing after it)", anchor)
	}
	section := fmt.Sprintf("  tracing:\n    endpoint: %q\n    protocol: http/protobuf\n    sample_ratio: 1\n"+
		"    queue_size: 65536\n    batch_size: 512\n    batch_timeout: 200ms\n", endpoint)
	return bytes.Replace(routes, []byte(anchor), []byte(anchor+section), 1), nil
}

// errNoJaeger: neither the benchmark's bin directory nor PATH has Jaeger.
var errNoJaeger = errors.New("jaeger is not built (make deps builds bin/jaeger)")

// jaeger is the collector of the tracing scenario.
type jaeger struct {
	proc     *process
	otlpHTTP string // http://127.0.0.1:port
}

// startJaeger runs bin/jaeger (make deps builds it) with in-memory storage on the load
// generator's CPUs.
func (r *Runner) startJaeger(ctx context.Context, pl placement) (*jaeger, error) {
	path := r.bin("jaeger")
	if !isExecutable(path) {
		var err error
		if path, err = lookTool("jaeger"); err != nil {
			return nil, errNoJaeger
		}
	}
	dir := filepath.Join(r.dir, pl.name+"-jaeger")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "jaeger.yaml")
	p := r.ports
	if err := writeFile(conf, stack.JaegerConfig(p["jaeger-otlp-http"], p["jaeger-otlp-grpc"], p["jaeger-query"], p["jaeger-query-grpc"])); err != nil {
		return nil, err
	}
	// Its own SDK off: Jaeger would trace itself.
	proc, err := start("jaeger", pl.loadCPU, []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true", fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs)},
		path, "--config", conf)
	if err != nil {
		return nil, err
	}
	if err := r.waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/api/services", p["jaeger-query"]), proc, 60*time.Second); err != nil {
		proc.stop(5 * time.Second)
		return nil, err
	}
	return &jaeger{proc: proc, otlpHTTP: fmt.Sprintf("http://127.0.0.1:%d", p["jaeger-otlp-http"])}, nil
}

func (j *jaeger) stop() {
	if j != nil {
		j.proc.stop(5 * time.Second)
	}
}

// spanCounts are a traced Archway's export counters.
type spanCounts struct{ exported, dropped float64 }

func (c spanCounts) total() float64 { return c.exported + c.dropped }

// spanCounts reads archway_tracing_spans_exported_total and the sum of
// archway_tracing_spans_dropped_total from the proxy's admin /metrics.
func (r *Runner) spanCounts(px *proxyProc) (spanCounts, error) {
	resp, err := r.client(5 * time.Second).Get("http://" + px.admin + "/metrics")
	if err != nil {
		return spanCounts{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return spanCounts{}, fmt.Errorf("GET %s/metrics: %s", px.admin, resp.Status)
	}
	return parseSpanCounts(bufio.NewScanner(resp.Body))
}

func parseSpanCounts(sc *bufio.Scanner) (spanCounts, error) {
	var c spanCounts
	seen := false
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// A label value with a space would split early; these have none.
			name = name[:i]
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			continue
		}
		switch name {
		case "archway_tracing_spans_exported_total":
			c.exported, seen = v, true
		case "archway_tracing_spans_dropped_total":
			c.dropped += v
		}
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	if !seen {
		return c, fmt.Errorf("no archway_tracing_spans_exported_total in /metrics")
	}
	return c, nil
}

// tracingLoad sends the scenario's fixed rate (open loop, 64 connections) to the contender;
// against the traced one it then waits until the export queue has sent the run's spans (its
// counters stop moving), so the CPU time of exporting them is counted in this run, and reports
// spans exported and dropped per request.
//
// The rate is fixed, the same for both, because CPU per request is not a constant of the
// proxy: driven flat out (wrk), a proxy that serves fewer requests per second wakes up for
// fewer requests each time and pays more system-call time per request. The collector shares
// the load generator's CPU and slows it, so a closed loop would charge that to tracing.
func tracingLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	var before spanCounts
	if px.traced {
		var err error
		if before, err = r.spanCounts(px); err != nil {
			return nil, err
		}
	}
	g, err := r.generator(pl, "openloop", "-addr", px.addr, "-path", c.path, "-rate", strconv.FormatFloat(r.tracingRate, 'f', 0, 64),
		"-duration", d.String(), "-conns", "64")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{
		stats.Rate: r.tracingRate, stats.RPS: float64(g.Completed) / g.ElapsedS, stats.Requests: float64(g.Completed), stats.Errors: float64(g.Errors),
		stats.P50: g.P50, stats.P90: g.P90, stats.P99: g.P99, stats.P999: g.P999,
	}
	if !px.traced {
		return m, nil
	}
	after, err := r.drained(px)
	if err != nil {
		return nil, err
	}
	if n := m[stats.Requests]; n > 0 {
		m[stats.SpansExported] = (after.exported - before.exported) / n
		m[stats.SpansDropped] = (after.dropped - before.dropped) / n
	}
	return m, nil
}

// drained polls the traced proxy's counters until two readings a batch interval and more apart
// agree: the queue has sent (or dropped) everything the run queued.
func (r *Runner) drained(px *proxyProc) (spanCounts, error) {
	deadline := time.Now().Add(30 * time.Second)
	last, err := r.spanCounts(px)
	if err != nil {
		return last, err
	}
	for {
		time.Sleep(300 * time.Millisecond) // batch_timeout is 200ms: a queued span goes within it
		cur, err := r.spanCounts(px)
		if err != nil {
			return cur, err
		}
		if cur.total() == last.total() {
			return cur, nil
		}
		if time.Now().After(deadline) {
			return cur, fmt.Errorf("the traced proxy was still exporting 30 s after the load ended (%v spans sent or dropped)", cur.total())
		}
		last = cur
	}
}
