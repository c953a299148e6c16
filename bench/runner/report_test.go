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
		)
	}
	return &Result{Scenario: stats.ScenarioPlain, Title: "GET", Date: "2026-01-02", Machine: Machine{CPUs: 2, RunCount: 3, RunSecs: "5s"},
		Placements: map[string]string{"A": "pinned"}, GOMAXPROCS: map[string]int{"A": 1}, Runs: runs, Summary: stats.Aggregate(runs), Headline: stats.RPS}
}

func TestReportAndChart(t *testing.T) {
	res := sampleResult()
	md := Report([]*Result{res}, stats.Evaluate(map[string]stats.Table{res.Scenario: res.Summary}), nil, Config{})
	for _, want := range []string{
		"| plain | A | 2.04 | – | 0.50 |", // 102/50 req/s, 1/2 ms
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
	if !strings.Contains(svg, ">A archway<") || !strings.Contains(svg, ">102<") {
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
