// Package stats aggregates benchmark runs (medians with min–max over counted runs) and decides
// the targets, PASS or MISS. It holds no I/O: the runner measures, this package judges.
package stats

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Metric names used in Run.Metrics.
const (
	RPS        = "rps"            // requests (or messages) per second
	P50        = "p50_ms"         // latency percentiles, milliseconds
	P90        = "p90_ms"         //
	P99        = "p99_ms"         //
	P999       = "p999_ms"        //
	Errors     = "errors"         // failed requests: socket errors, timeouts, statuses >= 400
	Requests   = "requests"       // requests completed
	CPUPerReq  = "cpu_us_per_req" // proxy CPU time (user+system, every process) per request, µs
	Capacity   = "req_per_cpu_s"  // 1e6 / cpu_us_per_req: requests one fully busy core would serve
	ProxyCPU   = "proxy_cpu_pct"  // proxy CPU time over wall time (100 = one core busy)
	PeakRSS    = "peak_rss_mib"   // peak resident memory of the proxy during the run (all processes)
	RSS        = "rss_mib"        // resident memory while holding idle connections (sum over processes)
	PSS        = "pss_mib"        // proportional set size: shared pages counted once across processes
	Steal      = "steal_pct"      // CPU steal time over the run, % of all CPU time on the machine
	Others     = "others_cpu_pct" // CPU used by processes the benchmark did not start (100 = one core)
	MsgsPerSec = "msgs_per_s"     // WebSocket echo round trips per second
	Reloads    = "reloads"        // configuration reloads done during the run
	Conns      = "conns"          // idle connections held
	Rate       = "rate"           // open-loop offered rate, requests per second
	// System calls and context switches of the proxy's processes per request, counted with
	// perf stat (raw_syscalls:sys_enter, context-switches) over a run of their own.
	Syscalls    = "syscalls_per_req"
	CtxSwitches = "ctx_switches_per_req"
	// The same run's context switches split by kind, from every thread's
	// /proc/<pid>/task/<tid>/status: voluntary (a thread blocked: epoll_wait, futex, nanosleep)
	// and involuntary (the kernel preempted a runnable thread, often for a neighbour's process).
	// Voluntary switches are what the proxy's own design causes; involuntary ones move with
	// the machine's load.
	VolSwitches   = "vol_switches_per_req"
	InvolSwitches = "invol_switches_per_req"
	// Failed requests by kind (the reload scenario's classifying load generator): a reused
	// keep-alive connection closed before any response byte is retried by real clients, so it
	// is counted apart and left out of ErrorsSeen.
	ErrConnect      = "err_connect"
	ErrReusedClosed = "err_reused_closed"
	ErrRead         = "err_read"
	ErrTimeout      = "err_timeout"
	ErrStatus       = "err_status"
	ErrorsSeen      = "errors_seen"       // what a client would see: every kind but ErrReusedClosed
	LogLines        = "log_lines_per_req" // access log lines written per request served
	Handshakes      = "handshakes_per_s"  // TLS handshakes (each with one request) per second
	Resumed         = "resumed_pct"       // share of handshakes that resumed a session
	// Spans the traced contender's collector accepted, and the spans it lost (queue full,
	// export failed), per request served: about 2 (a server and a client span) and 0 when the
	// collector kept up; a drop means the figure is of less work than tracing every request.
	SpansExported = "spans_exported_per_req"
	SpansDropped  = "spans_dropped_per_req"
)

// Run is one measured run of one contender.
type Run struct {
	Contender string             `json:"contender"`
	Placement string             `json:"placement"`
	Index     int                `json:"index"` // 0 is the warm-up, not counted
	Warmup    bool               `json:"warmup,omitempty"`
	Metrics   map[string]float64 `json:"metrics"`
	Note      string             `json:"note,omitempty"`
	// Kind is empty for a measured run; "perf" for a run of its own under perf stat, whose
	// counts are aggregated apart (AggregateKind) so perf's overhead never touches the
	// headline figures.
	Kind string `json:"kind,omitempty"`
}

// Summary is the median and range of one metric over counted runs.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median, minimum and maximum of vals (NaNs ignored). The median of an
// even count is the mean of the middle two.
func Summarize(vals []float64) Summary {
	v := make([]float64, 0, len(vals))
	for _, x := range vals {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{Median: med, Min: v[0], Max: v[n-1], N: n}
}

// String is "median (min–max)".
func (s Summary) String() string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", Num(s.Median), Num(s.Min), Num(s.Max))
}

// Num formats a figure with three significant digits, without exponent.
func Num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "–"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	}
	return fmt.Sprintf("%.3f", v)
}

// Table is the summaries of one scenario: placement → contender → metric.
type Table map[string]map[string]map[string]Summary

// Aggregate summarises the counted (non-warm-up) measured runs.
func Aggregate(runs []Run) Table { return AggregateKind(runs, "") }

// AggregateKind summarises the counted runs of one kind.
func AggregateKind(runs []Run, kind string) Table {
	vals := map[string]map[string]map[string][]float64{}
	for _, r := range runs {
		if r.Warmup || r.Kind != kind {
			continue
		}
		if vals[r.Placement] == nil {
			vals[r.Placement] = map[string]map[string][]float64{}
		}
		if vals[r.Placement][r.Contender] == nil {
			vals[r.Placement][r.Contender] = map[string][]float64{}
		}
		for k, v := range r.Metrics {
			vals[r.Placement][r.Contender][k] = append(vals[r.Placement][r.Contender][k], v)
		}
	}
	t := Table{}
	for pl, cs := range vals {
		t[pl] = map[string]map[string]Summary{}
		for c, ms := range cs {
			t[pl][c] = map[string]Summary{}
			for m, v := range ms {
				t[pl][c][m] = Summarize(v)
			}
		}
	}
	return t
}

// Get returns a summary, or one with N == 0 when it was not measured.
func (t Table) Get(placement, contender, metric string) Summary {
	s, ok := t[placement][contender][metric]
	if !ok {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	return s
}

// Ratio of two medians (a/b), NaN when either is missing or b is zero.
func Ratio(a, b Summary) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}

// Verdict is one target of the issue, judged.
type Verdict struct {
	Target string  `json:"target"`
	Rule   string  `json:"rule"`
	Value  float64 `json:"value"`
	Detail string  `json:"detail"`
	// Status is PASS, MISS, or "not measured".
	Status string `json:"status"`
}

func verdict(target, rule, detail string, value float64, pass bool) Verdict {
	v := Verdict{Target: target, Rule: rule, Value: value, Detail: detail}
	switch {
	case math.IsNaN(value):
		v.Status = "not measured"
		v.Detail = "–"
	case pass:
		v.Status = "PASS"
	default:
		v.Status = "MISS"
	}
	return v
}

// Contender names the runner uses; the targets are defined in their terms.
const (
	Archway        = "archway"
	Nginx          = "nginx"
	NginxAuto      = "nginx-auto"
	ArchwayNoLimit = "archway-no-limit"
	ArchwayBefore  = "archway-before" // an earlier build, for before/after figures
	ArchwayPark    = "archway-park"   // the same build with server.idle_park_after (-park)
	// ArchwayTraced is the same build with tracing on (server.tracing, every request sampled,
	// OTLP to a real collector), beside Archway with tracing off.
	ArchwayTraced = "archway-traced"
	HAProxy       = "haproxy"
	Caddy         = "caddy"
)

// Peers are the other proxies Archway is compared with, in report order.
var Peers = []string{Nginx, HAProxy, Caddy}

// Scenario names the runner uses.
const (
	ScenarioPlain     = "plain"
	ScenarioLimit     = "ratelimit"
	ScenarioCache     = "cache"
	ScenarioLatency   = "latency"
	ScenarioIdle      = "idle"
	ScenarioReload    = "reload"
	ScenarioAccessLog = "accesslog"
	ScenarioIdleWS    = "idle_websocket"
	ScenarioTLS       = "tls"
	ScenarioTLSFull   = "tls_handshake"
	ScenarioTLSResume = "tls_resume"
	ScenarioTLSIdle   = "tls_idle"
	ScenarioH2        = "h2"
	ScenarioH2H1      = "h2_h1"
	ScenarioH2C       = "h2c"
	ScenarioTracing   = "tracing"
	PlacementPinned   = "A"
	PlacementUnpined  = "U"
)

// Evaluate judges the targets on the scenarios measured (scenario → table). Targets on
// proxy throughput are judged in placement A, where the proxy is the bottleneck; the others on
// A when measured there, else U.
func Evaluate(tables map[string]Table) []Verdict {
	var out []Verdict
	pl := func(t Table) string {
		if _, ok := t[PlacementPinned]; ok {
			return PlacementPinned
		}
		return PlacementUnpined
	}
	plain := tables[ScenarioPlain]
	{
		a, n := plain.Get(PlacementPinned, Archway, RPS), plain.Get(PlacementPinned, Nginx, RPS)
		r := Ratio(a, n)
		capacity := Ratio(plain.Get(PlacementPinned, Archway, Capacity), plain.Get(PlacementPinned, Nginx, Capacity))
		out = append(out, verdict("A, plain proxy: requests/s", "≥ 1.0× nginx", fmt.Sprintf("%.2f× (%s vs %s req/s; per CPU-second %s)", r, Num(a.Median), Num(n.Median), times(capacity, 2)), r, r >= 1.0))
		a, n = plain.Get(PlacementPinned, Archway, CPUPerReq), plain.Get(PlacementPinned, Nginx, CPUPerReq)
		r = Ratio(a, n)
		out = append(out, verdict("A, plain proxy: CPU per request", "≤ 1.0× nginx", fmt.Sprintf("%.2f× (%s vs %s µs)", r, Num(a.Median), Num(n.Median)), r, r <= 1.0))
	}
	// Against every peer: the aim is to beat the best of them.
	for _, pl := range []string{PlacementPinned, PlacementUnpined} {
		if _, ok := plain[pl]; !ok {
			continue
		}
		best, bestCPU := bestPeer(plain, pl, RPS, true), bestPeer(plain, pl, CPUPerReq, false)
		if best != "" {
			a, b := plain.Get(pl, Archway, RPS), plain.Get(pl, best, RPS)
			r := Ratio(a, b)
			out = append(out, verdict(pl+", plain proxy: requests/s against the best peer", "≥ 1.05× the best peer", fmt.Sprintf("%.2f× %s (%s vs %s req/s)", r, best, Num(a.Median), Num(b.Median)), r, r >= 1.05))
		}
		if bestCPU != "" {
			a, b := plain.Get(pl, Archway, CPUPerReq), plain.Get(pl, bestCPU, CPUPerReq)
			r := Ratio(a, b)
			out = append(out, verdict(pl+", plain proxy: CPU per request against the best peer", "≤ 0.95× the best peer", fmt.Sprintf("%.2f× %s (%s vs %s µs)", r, bestCPU, Num(a.Median), Num(b.Median)), r, r <= 0.95))
		}
	}
	if t := tables[ScenarioLatency]; t != nil {
		p := pl(t)
		a, n := t.Get(p, Archway, CPUPerReq), t.Get(p, Nginx, CPUPerReq)
		r := Ratio(a, n)
		out = append(out, verdict(p+", CPU per request at half nginx's max rate", "≤ 1.0× nginx", fmt.Sprintf("%.2f× (%s vs %s µs)", r, Num(a.Median), Num(n.Median)), r, r <= 1.0))
	}
	for _, sc := range []string{ScenarioPlain, ScenarioLatency} {
		t := tables[sc+PerfSuffix]
		if t == nil {
			continue
		}
		p := pl(t)
		for _, m := range []string{Syscalls, CtxSwitches} {
			a, n := t.Get(p, Archway, m), t.Get(p, Nginx, m)
			r := Ratio(a, n)
			out = append(out, verdict(fmt.Sprintf("%s, %s: %s per request", p, sc, map[string]string{Syscalls: "system calls", CtxSwitches: "context switches"}[m]),
				"≤ nginx", fmt.Sprintf("%s vs %s", Num(a.Median), Num(n.Median)), r, r <= 1.0))
		}
	}
	if t := tables[ScenarioLimit]; t != nil {
		p := pl(t)
		a, b := t.Get(p, Archway, RPS), t.Get(p, ArchwayNoLimit, RPS)
		r := Ratio(a, b)
		capacity := Ratio(t.Get(p, Archway, Capacity), t.Get(p, ArchwayNoLimit, Capacity))
		out = append(out, verdict(p+", rate limit on", "≥ 0.97× Archway without it", fmt.Sprintf("%.3f× (%s vs %s req/s; per CPU-second %s)", r, Num(a.Median), Num(b.Median), times(capacity, 3)), r, r >= 0.97))
	} else {
		out = append(out, verdict("rate limit on", "≥ 0.97× Archway without it", "", math.NaN(), false))
	}
	if t := tables[ScenarioCache]; t != nil {
		p := pl(t)
		a, n := t.Get(p, Archway, RPS), t.Get(p, Nginx, RPS)
		r := Ratio(a, n)
		capacity := Ratio(t.Get(p, Archway, Capacity), t.Get(p, Nginx, Capacity))
		out = append(out, verdict(p+", cache hits", "≥ 2× nginx proxy_cache", fmt.Sprintf("%.2f× (%s vs %s req/s; per CPU-second %s)", r, Num(a.Median), Num(n.Median), times(capacity, 2)), r, r >= 2.0))
	} else {
		out = append(out, verdict("cache hits", "≥ 2× nginx proxy_cache", "", math.NaN(), false))
	}
	if t := tables[ScenarioLatency]; t != nil {
		p := pl(t)
		a, n := t.Get(p, Archway, P50), t.Get(p, Nginx, P50)
		d := math.NaN()
		if a.N > 0 && n.N > 0 {
			d = a.Median - n.Median
		}
		rate := t.Get(p, Nginx, Rate)
		out = append(out, verdict(p+", p50 at half nginx's max rate", "≤ nginx + 0.1 ms", fmt.Sprintf("%+.3f ms (%.3f vs %.3f ms at %s req/s)", d, a.Median, n.Median, Num(rate.Median)), d, d <= 0.1))
	} else {
		out = append(out, verdict("p50 at half nginx's max rate", "≤ nginx + 0.1 ms", "", math.NaN(), false))
	}
	if t := tables[ScenarioIdle]; t != nil {
		p := pl(t)
		a, n := t.Get(p, Archway, PSS), t.Get(p, Nginx, PSS)
		r := Ratio(a, n)
		out = append(out, verdict(p+", 10 000 idle connections: memory", "≤ 2× nginx", fmt.Sprintf("%.2f× (%s vs %s MiB PSS)", r, Num(a.Median), Num(n.Median)), r, r <= 2.0))
	} else {
		out = append(out, verdict("10 000 idle connections: memory", "≤ 2× nginx", "", math.NaN(), false))
	}
	if t := tables[ScenarioTracing]; t != nil {
		// Issue 14's goal: tracing every request costs at most 5 % more CPU per request.
		p := pl(t)
		a, b := t.Get(p, ArchwayTraced, CPUPerReq), t.Get(p, Archway, CPUPerReq)
		r := Ratio(a, b)
		out = append(out, verdict(p+", tracing on, every request sampled: CPU per request", "≤ 1.05× tracing off",
			fmt.Sprintf("%.3f× (%s vs %s µs; %s spans exported and %s dropped per request)", r, Num(a.Median), Num(b.Median),
				Num(t.Get(p, ArchwayTraced, SpansExported).Median), Num(t.Get(p, ArchwayTraced, SpansDropped).Median)), r, r <= 1.05))
	}
	if t := tables[ScenarioReload]; t != nil {
		// Every counted run must be clean: the worst run is what is judged.
		w := worstOf(t, Archway, ErrorsSeen)
		var peers []string
		for _, p := range Peers {
			if v := worstOf(t, p, ErrorsSeen); !math.IsNaN(v) {
				peers = append(peers, fmt.Sprintf("%s %s (%s retried)", p, Num(v), Num(worstOf(t, p, ErrReusedClosed))))
			}
		}
		out = append(out, verdict("reload every 100 ms under load", "0 failed requests a client sees", fmt.Sprintf("Archway's worst run: %s seen (%s retried); peers' worst: %s",
			Num(w), Num(worstOf(t, Archway, ErrReusedClosed)), strings.Join(peers, ", ")), w, w == 0))
	} else {
		out = append(out, verdict("reload every 100 ms under load", "0 failed requests a client sees", "", math.NaN(), false))
	}
	return out
}

// times writes a ratio as "1.23×", or "–" when it was not measured.
func times(r float64, digits int) string {
	if math.IsNaN(r) {
		return "–"
	}
	return fmt.Sprintf("%.*f×", digits, r)
}

// PerfSuffix marks, in Evaluate's tables, a scenario's perf-run counts (Result.Syscalls).
const PerfSuffix = "/perf"

// bestPeer is the peer with the highest (or lowest) median of metric in placement pl.
func bestPeer(t Table, pl, metric string, highest bool) string {
	best := ""
	for _, p := range Peers {
		s := t.Get(pl, p, metric)
		if s.N == 0 {
			continue
		}
		if b := t.Get(pl, best, metric); best == "" || (highest && s.Median > b.Median) || (!highest && s.Median < b.Median) {
			best = p
		}
	}
	return best
}

func worstOf(t Table, contender, metric string) float64 {
	w := math.NaN()
	for p := range t {
		if s, ok := t[p][contender][metric]; ok && (math.IsNaN(w) || s.Max > w) {
			w = s.Max
		}
	}
	return w
}
