package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/archway-gateway/archway/bench/stats"
)

// write saves every scenario's JSON and chart, the Markdown report, and the docs section.
func (r *Runner) write() error {
	tables := map[string]stats.Table{}
	var names []string
	for name, res := range r.results {
		names = append(names, name)
		tables[name] = res.Summary
		if len(res.Syscalls) > 0 {
			tables[name+stats.PerfSuffix] = res.Syscalls
		}
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(r.cfg.Results, r.date+"-"+name+".json"), append(data, '\n')); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(r.cfg.Results, r.date+"-"+name+".svg"), []byte(Chart(res))); err != nil {
			return err
		}
	}
	order := map[string]int{}
	for i, s := range scenarios(false) {
		order[s.name] = i
	}
	slices.SortFunc(names, func(a, b string) int { return order[a] - order[b] })
	var results []*Result
	for _, n := range names {
		results = append(results, r.results[n])
	}
	md := Report(results, stats.Evaluate(tables), r.profile, r.cfg)
	path := filepath.Join(r.cfg.Results, r.date+"-report.md")
	if err := writeFile(path, []byte(md)); err != nil {
		return err
	}
	r.logf("report: %s", path)
	fmt.Fprint(r.cfg.Log, "\n"+md)
	if r.cfg.Docs != "" {
		return UpdateDocs(r.cfg.Docs, md, r.cfg.Results, r.date)
	}
	return nil
}

// Report is the Markdown report: targets, ratios and every figure with its range.
func Report(results []*Result, verdicts []stats.Verdict, profiles []profileSummary, cfg Config) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	if len(results) == 0 {
		return "no results\n"
	}
	m := results[0].Machine
	mode := "full"
	if cfg.Quick {
		mode = "quick"
	}
	w("## Results of %s (%s run)\n\n", results[0].Date, mode)
	w("%d × %s, Linux %s, %s, nginx %s, HAProxy %s, Caddy %s, wrk %s. Each figure is the median of %d counted runs of %s after one warm-up,\n",
		m.CPUs, m.Model, m.Kernel, m.Go, m.Nginx, m.HAProxy, m.Caddy, m.Wrk, m.RunCount, m.RunSecs)
	w("with the range (min–max) in parentheses; the contenders alternated run by run.\n\n")
	pls := map[string]string{}
	gmp := map[string]int{}
	for _, res := range results {
		for k, v := range res.Placements {
			pls[k] = v
			gmp[k] = res.GOMAXPROCS[k]
		}
	}
	for _, k := range sortedKeys(pls) {
		w("- Placement **%s**: %s. Archway and Caddy GOMAXPROCS=%d; nginx worker_processes 1 (nginx-auto: auto); HAProxy nbthread %d.\n", k, pls[k], gmp[k], gmp[k])
	}
	w("\n### Targets\n\n| target | rule | measured | |\n|---|---|---|---|\n")
	for _, v := range verdicts {
		w("| %s | %s | %s | **%s** |\n", v.Target, v.Rule, v.Detail, v.Status)
	}
	w("\n### Archway / each peer\n\nRatios of medians: above 1 is better for Archway in req/s and per CPU-second (requests served\n" +
		"per second of the proxy's CPU time: its throughput on a core of its own, steadier than req/s on\n" +
		"a shared machine), below 1 in latency, CPU and memory. A peer missing from a scenario could not\n" +
		"do its work (see the scenario's note).\n\n")
	w("| scenario | placement | peer | req/s (or msg/s) | per CPU-second | p50 | p99 | p99.9 | CPU µs/req | memory | errors Archway / peer |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range results {
		for _, pl := range sortedKeys(res.Summary) {
			t := res.Summary
			for _, peer := range stats.Peers {
				if _, ok := t[pl][peer]; !ok {
					continue
				}
				ratio := func(metric string) string {
					v := stats.Ratio(t.Get(pl, stats.Archway, metric), t.Get(pl, peer, metric))
					if math.IsNaN(v) {
						return "–"
					}
					return fmt.Sprintf("%.2f", v)
				}
				tput := ratio(stats.RPS)
				switch res.Headline {
				case stats.MsgsPerSec, stats.Handshakes:
					tput = ratio(res.Headline)
				}
				mem := ratio(stats.PeakRSS) + " (peak RSS)"
				if res.Headline == stats.PSS {
					mem = ratio(stats.PSS) + " (PSS, held)"
					tput = "–"
				}
				w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", res.Scenario, pl, peer, tput, ratio(stats.Capacity), ratio(stats.P50), ratio(stats.P99), ratio(stats.P999),
					ratio(stats.CPUPerReq), mem, stats.Num(t.Get(pl, stats.Archway, stats.Errors).Median), stats.Num(t.Get(pl, peer, stats.Errors).Median))
			}
		}
	}
	var counted []*Result
	for _, res := range results {
		if len(res.Syscalls) > 0 {
			counted = append(counted, res)
		}
	}
	if len(counted) > 0 {
		w("\n### System calls and context switches per request\n\n" +
			"Counted by `perf stat -e raw_syscalls:sys_enter,context-switches` attached to every process of\n" +
			"the proxy over the middle of a run of its own (after the measured runs, so perf's cost never\n" +
			"touches the figures above), divided by the requests served meanwhile. `plain` is saturation\n" +
			"(wrk, 64 connections); `latency` is half of nginx's maximum rate, open loop. Counts barely move\n" +
			"with a neighbour's load, unlike timings. The switches are split by kind from every thread's\n" +
			"`/proc/<pid>/task/<tid>/status` over the same window: voluntary (a thread blocked in\n" +
			"`epoll_wait`, a futex or a sleep: the proxy's design) and involuntary (the kernel preempted\n" +
			"it: mostly the machine's load).\n\n")
		w("| scenario | placement | contender | syscalls / request | context switches / request | voluntary | involuntary | req/s meanwhile |\n|---|---|---|---|---|---|---|---|\n")
		for _, res := range counted {
			for _, pl := range sortedKeys(res.Syscalls) {
				for _, c := range contendersOf(res.Syscalls[pl]) {
					g := func(m string) string { return res.Syscalls.Get(pl, c, m).String() }
					w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", res.Scenario, pl, c, g(stats.Syscalls), g(stats.CtxSwitches),
						g(stats.VolSwitches), g(stats.InvolSwitches), g(stats.RPS))
				}
			}
		}
	}
	w("\n### Every figure\n")
	for _, res := range results {
		w("\n#### %s: %s\n\n", res.Scenario, res.Title)
		for _, n := range res.Notes {
			w("%s\n\n", n)
		}
		cols := []string{stats.RPS, stats.P50, stats.P90, stats.P99, stats.P999, stats.Errors, stats.CPUPerReq, stats.Capacity, stats.ProxyCPU, stats.PeakRSS, stats.Steal, stats.Others}
		switch res.Headline {
		case stats.MsgsPerSec:
			cols[0] = stats.MsgsPerSec
		case stats.Handshakes:
			cols[0] = stats.Handshakes
			cols = append(cols, stats.Resumed)
		case stats.PSS:
			cols = []string{stats.PSS, stats.RSS, "pss_before_mib", "kib_per_conn", "kib_per_conn_total", stats.Steal, stats.Others}
		}
		switch res.Scenario {
		case stats.ScenarioReload:
			cols = []string{stats.RPS, stats.Errors, stats.ErrorsSeen, stats.ErrReusedClosed, stats.ErrConnect, stats.ErrRead, stats.ErrTimeout, stats.ErrStatus,
				stats.CPUPerReq, stats.Reloads, stats.Steal, stats.Others}
			w("Failures by kind (`archway-bench closed`, 64 connections): `err_reused_closed` is a reused keep-alive\n" +
				"connection closed before any byte of the response. Browsers and HTTP libraries send such an\n" +
				"idempotent request again on a new connection without telling anyone, and so does the load\n" +
				"generator (once): it is counted, but it is not a failure a client sees. `errors_seen` is every\n" +
				"other kind: refused connections, reads failing on a fresh connection or mid-response, timeouts,\n" +
				"statuses of 500 or more, and a retry that failed again.\n\n")
		case stats.ScenarioAccessLog:
			cols = append(cols, stats.LogLines)
		case stats.ScenarioTracing:
			cols = append([]string{stats.CPUPerReq, stats.Rate}, slices.DeleteFunc(cols, func(c string) bool { return c == stats.CPUPerReq })...)
			cols = append(cols, stats.SpansExported, stats.SpansDropped)
		case stats.ScenarioH2, stats.ScenarioH2H1, stats.ScenarioH2C:
			// h2load reports a mean time per request, no percentiles.
			cols = []string{stats.RPS, "mean_ms", stats.Errors, stats.CPUPerReq, stats.Capacity, stats.ProxyCPU, stats.PeakRSS, stats.Steal, stats.Others}
		}
		if res.Scenario == stats.ScenarioLatency {
			cols = append([]string{stats.Rate}, cols...)
		}
		w("| placement | contender | %s |\n|---|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		for _, pl := range sortedKeys(res.Summary) {
			for _, c := range contendersOf(res.Summary[pl]) {
				var cells []string
				for _, col := range cols {
					cells = append(cells, res.Summary.Get(pl, c, col).String())
				}
				w("| %s | %s | %s |\n", pl, c, strings.Join(cells, " | "))
			}
		}
		w("\n![%s](%s-%s.svg)\n", res.Scenario, res.Date, res.Scenario)
	}
	if len(profiles) > 0 {
		w("\n### Where Archway spends its time (placement A, CPU profile under wrk load)\n")
		for _, p := range profiles {
			w("\n%s (`%s`, `%s`): top functions by flat CPU time\n\n```text\n%s\n```\n", p.Scenario, p.CPUFile, p.HeapFile, p.Top)
		}
	}
	return b.String()
}

func contendersOf(m map[string]map[string]stats.Summary) []string {
	order := []string{stats.Archway, stats.ArchwayTraced, stats.ArchwayBefore, stats.ArchwayPark, stats.ArchwayNoLimit, stats.Nginx, stats.NginxAuto, stats.HAProxy, stats.Caddy}
	var out, variants []string
	for _, c := range order {
		if _, ok := m[c]; ok {
			out = append(out, c)
		}
	}
	// The -archway-env variants (archway-NAME), by name, after the gateway's own contenders.
	for c := range m {
		if strings.HasPrefix(c, stats.Archway+"-") && !slices.Contains(order, c) {
			variants = append(variants, c)
		}
	}
	slices.Sort(variants)
	i := slices.Index(out, stats.ArchwayNoLimit)
	if i < 0 {
		i = slices.IndexFunc(out, func(c string) bool { return !strings.HasPrefix(c, stats.Archway) })
	}
	if i < 0 {
		i = len(out)
	}
	return slices.Insert(out, i, variants...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const (
	docsBegin = "<!-- results: written by make bench-nginx -->"
	docsEnd   = "<!-- /results -->"
)

// UpdateDocs replaces the results section of the benchmarks page with the report md of date,
// its links made relative to the page.
func UpdateDocs(path, md, results, date string) error {
	var err error
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	if results, err = filepath.Abs(results); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, docsBegin), strings.Index(s, docsEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q … %q section", path, docsBegin, docsEnd)
	}
	rel, err := filepath.Rel(filepath.Dir(path), results)
	if err != nil {
		return err
	}
	// Charts are referenced relative to the results directory in the report.
	md = strings.ReplaceAll(md, "]("+date+"-", "]("+filepath.ToSlash(rel)+"/"+date+"-")
	md = strings.ReplaceAll(md, "`"+date+"-", "`"+filepath.ToSlash(rel)+"/"+date+"-")
	return writeFile(path, []byte(s[:i+len(docsBegin)]+"\n\n"+md+"\n"+s[j:]))
}

// Chart draws a scenario's headline metric as an SVG bar chart: one bar per placement and
// contender at the median, with a whisker from the minimum to the maximum.
func Chart(res *Result) string {
	type bar struct {
		label string
		s     stats.Summary
	}
	var bars []bar
	for _, pl := range sortedKeys(res.Summary) {
		for _, c := range contendersOf(res.Summary[pl]) {
			bars = append(bars, bar{pl + " " + c, res.Summary.Get(pl, c, res.Headline)})
		}
	}
	top := 0.0
	for _, b := range bars {
		if !math.IsNaN(b.s.Max) {
			top = math.Max(top, b.s.Max)
		}
	}
	if top == 0 {
		top = 1
	}
	top *= 1.15
	const height, left, bottom, barW, gap = 360, 70, 60, 60, 30
	width := max(720, left+20+len(bars)*(barW+gap)+10)
	plotH := float64(height - bottom - 40)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s: %s (median, min–max)</text>`+"\n", left, html.EscapeString(res.Scenario), html.EscapeString(metricLabel(res.Headline)))
	y := func(v float64) float64 { return 40 + plotH*(1-v/top) }
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left, width-10, y(v), y(v), left-5, y(v)+4, stats.Num(v))
	}
	for i, br := range bars {
		x := float64(left + 20 + i*(barW+gap))
		color := "#4e79a7"
		switch {
		case strings.Contains(br.label, "nginx"):
			color = "#f28e2b"
		case strings.Contains(br.label, "haproxy"):
			color = "#59a14f"
		case strings.Contains(br.label, "caddy"):
			color = "#b07aa1"
		}
		if strings.Contains(br.label, "no-limit") || strings.Contains(br.label, "auto") || strings.Contains(br.label, "before") {
			color = "#bab0ac"
		}
		if _, c, _ := strings.Cut(br.label, " "); strings.HasPrefix(c, stats.Archway+"-") && !slices.Contains(reservedLabels, c) {
			color = "#a0cbe8" // an -archway-env variant: the gateway's colour, lighter
		}
		if !math.IsNaN(br.s.Median) {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"/>`+"\n", x, y(br.s.Median), barW, y(0)-y(br.s.Median), color)
			cx := x + barW/2
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`+"\n",
				cx, cx, y(br.s.Min), y(br.s.Max), cx-8, cx+8, y(br.s.Min), y(br.s.Min), cx-8, cx+8, y(br.s.Max), y(br.s.Max))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, y(br.s.Max)-5, stats.Num(br.s.Median))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x+barW/2, height-bottom+18, html.EscapeString(br.label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func metricLabel(m string) string {
	return map[string]string{stats.RPS: "requests/s", stats.MsgsPerSec: "messages/s", stats.PSS: "memory (PSS) with 10 000 idle connections, MiB",
		stats.P50: "p50 latency, ms", stats.Handshakes: "TLS handshakes/s (one request each)", stats.CPUPerReq: "proxy CPU µs per request"}[m]
}

// profileSummary is one captured profile and its top functions.
type profileSummary struct {
	Scenario, CPUFile, HeapFile, Top string
}

// captureProfile runs a pprof-enabled build of the gateway (bench/cmd/gateway-pprof, the same
// packages as the gateway binary) where Archway ran, under the scenario's load, and saves a CPU
// profile and a heap profile beside the results.
func (r *Runner) captureProfile(ctx context.Context, pl placement, s *scenario) error {
	dir := filepath.Join(r.dir, "pprof-"+s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src, err := os.ReadFile(filepath.Join(r.cfg.Repo, "bench", "routes.yaml"))
	if err != nil {
		return err
	}
	if s.name == stats.ScenarioTracing {
		// The traced contender is the one profiled, exporting to a collector as in the runs.
		j, err := r.startJaeger(ctx, pl)
		if err != nil {
			return err
		}
		defer j.stop()
		if src, err = tracedRoutes(src, j.otlpHTTP); err != nil {
			return err
		}
	}
	conf := filepath.Join(dir, "routes.yaml")
	if err := writeFile(conf, src); err != nil {
		return err
	}
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", r.ports["pprof"])
	env := []string{fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs), "ARCHWAY_LOG_LEVEL=warn"}
	for k, v := range r.env {
		env = append(env, k+"="+v)
	}
	p, err := start("gateway-pprof", pl.proxyCPU, env, r.bin("gateway-pprof"), "-config", conf, "-pprof", pprofAddr)
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	addr := r.env["BENCH_LISTEN"]
	if err := r.waitHTTP(ctx, "http://"+addr+"/health", p, 20*time.Second); err != nil {
		return err
	}
	path := s.contenders[0].path
	secs := 10
	wrkDone := make(chan error, 1)
	go func() {
		_, err := r.wrk(pl, "http://"+addr+path, 64, "", time.Duration(secs+3)*time.Second)
		wrkDone <- err
	}()
	time.Sleep(time.Second)
	cpuFile := r.date + "-" + s.name + "-cpu.pprof"
	heapFile := r.date + "-" + s.name + "-heap.pprof"
	if err := fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, secs), filepath.Join(r.cfg.Results, cpuFile)); err != nil {
		return err
	}
	if err := fetch("http://"+pprofAddr+"/debug/pprof/heap", filepath.Join(r.cfg.Results, heapFile)); err != nil {
		return err
	}
	if err := <-wrkDone; err != nil {
		return err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", r.bin("gateway-pprof"), filepath.Join(r.cfg.Results, cpuFile)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	r.profile = append(r.profile, profileSummary{Scenario: s.name, CPUFile: cpuFile, HeapFile: heapFile, Top: strings.TrimSpace(string(out))})
	r.logf("profile %s: %s, %s", s.name, cpuFile, heapFile)
	return nil
}

func fetch(url, file string) error {
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return writeFile(file, data)
}
