package main

import (
	"encoding/json"
	"math"
	"net/http"
	"runtime/metrics"
)

// runtimeMetricNames are what /debug/runtime-metrics reports: where a request's tail can come
// from in the runtime (time runnable before running, GC cycles and pauses, goroutines, threads).
var runtimeMetricNames = []string{
	"/sched/latencies:seconds",
	"/sched/pauses/total/gc:seconds",
	"/gc/cycles/total:gc-cycles",
	"/sched/goroutines:goroutines",
	"/sched/gomaxprocs:threads",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/scavenge/total:cpu-seconds",
	"/cpu/classes/idle:cpu-seconds",
	"/cpu/classes/user:cpu-seconds",
	"/gc/heap/allocs:objects",
}

// histogram is a runtime/metrics histogram with the infinite outer bounds written as ±1e308,
// which JSON can carry.
type histogram struct {
	Counts  []uint64  `json:"counts"`
	Buckets []float64 `json:"buckets"`
}

// runtimeMetrics writes the current value of each of runtimeMetricNames as a JSON object
// (name → number, or → histogram). A reader subtracts two of them to get a window's figures.
func runtimeMetrics(w http.ResponseWriter, _ *http.Request) {
	samples := make([]metrics.Sample, len(runtimeMetricNames))
	for i, n := range runtimeMetricNames {
		samples[i].Name = n
	}
	metrics.Read(samples)
	out := map[string]any{}
	for _, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			out[s.Name] = s.Value.Uint64()
		case metrics.KindFloat64:
			out[s.Name] = s.Value.Float64()
		case metrics.KindFloat64Histogram:
			h := s.Value.Float64Histogram()
			b := make([]float64, len(h.Buckets))
			for i, v := range h.Buckets {
				b[i] = max(-math.MaxFloat64, min(math.MaxFloat64, v))
			}
			out[s.Name] = histogram{Counts: h.Counts, Buckets: b}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
