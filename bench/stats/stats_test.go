package stats

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Summary
	}{
		{[]float64{5, 1, 3}, Summary{3, 1, 5, 3}},
		{[]float64{4, 1, 3, 2}, Summary{2.5, 1, 4, 4}},
		{[]float64{7}, Summary{7, 7, 7, 1}},
		{[]float64{math.NaN(), 2, 4}, Summary{3, 2, 4, 2}},
	} {
		if got := Summarize(c.in); got != c.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
	if s := Summarize(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("empty: %+v", s)
	}
	if got := (Summary{12345.6, 11000, 13000.4, 5}).String(); got != "12346 (11000–13000)" {
		t.Errorf("String = %q", got)
	}
	if got := Num(0.04567); got != "0.046" {
		t.Errorf("Num = %q", got)
	}
}

func run(pl, c string, i int, m map[string]float64) Run {
	return Run{Contender: c, Placement: pl, Index: i, Warmup: i == 0, Metrics: m}
}

func TestAggregateSkipsWarmups(t *testing.T) {
	tab := Aggregate([]Run{
		run("A", Archway, 0, map[string]float64{RPS: 1}), // warm-up: ignored
		run("A", Archway, 1, map[string]float64{RPS: 10}),
		run("A", Nginx, 1, map[string]float64{RPS: 8}),
		run("A", Archway, 2, map[string]float64{RPS: 12}),
		run("A", Nginx, 2, map[string]float64{RPS: 9}),
		run("A", Archway, 3, map[string]float64{RPS: 11}),
		run("A", Nginx, 3, map[string]float64{RPS: 10}),
	})
	a, n := tab.Get("A", Archway, RPS), tab.Get("A", Nginx, RPS)
	if a != (Summary{11, 10, 12, 3}) || n != (Summary{9, 8, 10, 3}) {
		t.Fatalf("archway %+v nginx %+v", a, n)
	}
	if r := Ratio(a, n); math.Abs(r-11.0/9) > 1e-9 {
		t.Errorf("ratio %v", r)
	}
	if s := tab.Get("U", Archway, RPS); s.N != 0 || !math.IsNaN(Ratio(s, n)) {
		t.Errorf("missing placement: %+v", s)
	}
}

func table(pl string, vals map[string]map[string][]float64) Table {
	var runs []Run
	for c, ms := range vals {
		for m, vs := range ms {
			for i, v := range vs {
				runs = append(runs, run(pl, c, i+1, map[string]float64{m: v}))
			}
		}
	}
	return Aggregate(runs)
}

func statuses(vs []Verdict) map[string]string {
	out := map[string]string{}
	for _, v := range vs {
		out[v.Rule+" "+v.Target] = v.Status
	}
	return out
}

func TestEvaluate(t *testing.T) {
	tables := map[string]Table{
		ScenarioPlain: table("A", map[string]map[string][]float64{
			Archway: {RPS: {100, 110, 105}, CPUPerReq: {40, 41, 39}},
			Nginx:   {RPS: {100, 101, 99}, CPUPerReq: {38, 39, 40}},
			HAProxy: {RPS: {90, 91, 92}, CPUPerReq: {36, 37, 38}},
		}),
		ScenarioLimit: table("A", map[string]map[string][]float64{
			Archway:        {RPS: {97, 98, 99}},
			ArchwayNoLimit: {RPS: {100, 100, 100}},
		}),
		ScenarioCache: table("A", map[string]map[string][]float64{
			Archway: {RPS: {190, 199, 195}},
			Nginx:   {RPS: {100, 100, 100}},
		}),
		ScenarioLatency: table("A", map[string]map[string][]float64{
			Archway: {P50: {0.30, 0.35, 0.32}},
			Nginx:   {P50: {0.25, 0.22, 0.23}, Rate: {5000, 5000, 5000}},
		}),
		ScenarioIdle: table("U", map[string]map[string][]float64{
			Archway: {PSS: {60, 61, 59}},
			Nginx:   {PSS: {30, 31, 29}},
		}),
		ScenarioTracing: table("A", map[string]map[string][]float64{
			Archway:       {CPUPerReq: {40, 41, 39}},
			ArchwayTraced: {CPUPerReq: {42, 43, 41}, SpansExported: {2, 2, 2}, SpansDropped: {0, 0, 0}},
		}),
		ScenarioReload: table("A", map[string]map[string][]float64{
			Archway: {Errors: {0, 0, 3}, ErrorsSeen: {0, 0, 1}, ErrReusedClosed: {0, 0, 2}},
			Nginx:   {Errors: {3, 5, 4}, ErrorsSeen: {0, 0, 0}, ErrReusedClosed: {3, 5, 4}},
		}),
	}
	got := statuses(Evaluate(tables))
	want := map[string]string{
		"≥ 1.0× nginx A, plain proxy: requests/s":                                     "PASS", // 105 vs 100
		"≤ 1.0× nginx A, plain proxy: CPU per request":                                "MISS", // 40 vs 39
		"≥ 0.97× Archway without it A, rate limit on":                                 "PASS", // 0.98
		"≥ 2× nginx proxy_cache A, cache hits":                                        "MISS", // 1.95
		"≤ nginx + 0.1 ms A, p50 at half nginx's max rate":                            "PASS", // +0.09
		"≤ 2× nginx U, 10 000 idle connections: memory":                               "PASS", // 60/30 = 2.0
		"≥ 1.05× the best peer A, plain proxy: requests/s against the best peer":      "PASS", // 105 vs nginx's 100: 1.05×
		"≤ 0.95× the best peer A, plain proxy: CPU per request against the best peer": "MISS", // 40 vs HAProxy's 37
		"0 failed requests a client sees reload every 100 ms under load":              "MISS", // one run failed one
		"≤ 1.05× tracing off A, tracing on, every request sampled: CPU per request":   "PASS", // 42/40 = 1.05
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s (all: %v)", k, got[k], w, got)
		}
	}

	none := statuses(Evaluate(map[string]Table{}))
	for k, s := range none {
		if s != "not measured" {
			t.Errorf("%s: %s with nothing measured", k, s)
		}
	}
}
