package runner

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/bench/stats"
)

func sampleResult() *Result {
	var runs []stats.Run
	for i := 0; i <= 3; i++ {
		runs = append(runs,
			stats.Run{Contender: stats.Archway, Placement: "A", Index: i, Warmup: i == 0, Metrics: map[string]float64{stats.RPS: 100 + float64(i), stats.CPUPerReq: 20, stats.P50: 1}},
			stats.Run{Contender: stats.Nginx, Placement: "A", Index: i, Warmup: i == 0, Metrics: map[string]float64{stats.RPS: 50, stats.CPUPerReq: 25, stats.P50: 2}},
			stats.Run{Contender: stats.HAProxy, Placement: "A", Index: i, Warmup: i == 0, Metrics: map[string]float64{stats.RPS: 80, stats.CPUPerReq: 16, stats.P50: 1}},
		)
	}
	for _, c := range []string{stats.Archway, stats.Nginx, stats.HAProxy} {
		runs = append(runs, stats.Run{Contender: c, Placement: "A", Index: 1, Kind: "perf",
			Metrics: map[string]float64{stats.Syscalls: 5.3, stats.CtxSwitches: 1.9, stats.VolSwitches: 1.5, stats.InvolSwitches: 0.4, stats.RPS: 40}})
	}
	return &Result{Scenario: stats.ScenarioPlain, Title: "GET", Date: "2026-01-02", Machine: Machine{CPUs: 2, RunCount: 3, RunSecs: "5s"},
		Placements: map[string]string{"A": "pinned"}, GOMAXPROCS: map[string]int{"A": 1}, Runs: runs, Summary: stats.Aggregate(runs),
		Syscalls: stats.AggregateKind(runs, "perf"), Headline: stats.RPS}
}

func TestReportAndChart(t *testing.T) {
	res := sampleResult()
	md := Report([]*Result{res}, stats.Evaluate(map[string]stats.Table{res.Scenario: res.Summary, res.Scenario + stats.PerfSuffix: res.Syscalls}), nil, Config{})
	for _, want := range []string{
		"| plain | A | nginx | 2.04 | – | 0.50 |",   // 102/50 req/s, 1/2 ms
		"| plain | A | haproxy | 1.27 | – | 1.00 |", // 102/80 req/s
		"| A, plain proxy: requests/s against the best peer | ≥ 1.05× the best peer | 1.27× haproxy (102 vs 80.0 req/s) | **PASS** |",
		"| A, plain proxy: CPU per request against the best peer | ≤ 0.95× the best peer | 1.25× haproxy (20.0 vs 16.0 µs) | **MISS** |",
		"| A, plain: system calls per request | ≤ nginx | 5.30 vs 5.30 | **PASS** |",
		"| plain | A | haproxy | 5.30 (5.30–5.30) | 1.90 (1.90–1.90) | 1.50 (1.50–1.50) | 0.400 (0.400–0.400) | 40.0 (40.0–40.0) |",
		"| A, plain proxy: requests/s | ≥ 1.0× nginx | 2.04× (102 vs 50.0 req/s; per CPU-second –) | **PASS** |",
		"| A | archway | 102 (101–103) |",
		"![plain](2026-01-02-plain.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	svg := Chart(res)
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
	}
	if !strings.Contains(svg, ">A archway<") || !strings.Contains(svg, ">102<") || !strings.Contains(svg, ">A haproxy<") {
		t.Errorf("chart lacks a bar:\n%s", svg)
	}
}

func TestUpdateDocsReplacesTheResultsSection(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "docs", "benchmarks.md")
	if err := writeFile(doc, []byte("# B\n\nintro\n\n"+docsBegin+"\nold\n"+docsEnd+"\n\nafter\n")); err != nil {
		t.Fatal(err)
	}
	md := "## Results\n\n![plain](2026-01-02-plain.svg) `2026-01-02-plain-cpu.pprof`\n"
	if err := UpdateDocs(doc, md, filepath.Join(dir, "bench", "results"), "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(doc)
	got := string(data)
	if strings.Contains(got, "old") || !strings.Contains(got, "intro") || !strings.Contains(got, "after") {
		t.Fatalf("section not replaced in place:\n%s", got)
	}
	if !strings.Contains(got, "](../bench/results/2026-01-02-plain.svg)") || !strings.Contains(got, "`../bench/results/2026-01-02-plain-cpu.pprof`") {
		t.Errorf("links not relative to the docs page:\n%s", got)
	}
}
