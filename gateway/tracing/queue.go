package tracing

import (
	"log/slog"

	"github.com/archway-gateway/archway/internal/exportqueue"
	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what the gateway's tracers exported and lost: the counts of their export queues
// (internal/exportqueue, the queue the services use too). One Stats outlives the tracers of
// successive configurations. Safe for concurrent use.
type Stats struct {
	exportqueue.Counts
	// Log is where the tracers' exporters log what a collector said in a partial success (at
	// most once a minute each); nil logs to slog.Default().
	Log *slog.Logger
}

var (
	descExported = prometheus.NewDesc("archway_tracing_spans_exported_total", "Spans the trace collector accepted.", nil, nil)
	descDropped  = prometheus.NewDesc("archway_tracing_spans_dropped_total",
		"Spans lost before the collector accepted them, by reason: queue_full (the export queue was full: the collector is slow or down), export_failed (the collector refused or could not be reached), shutdown (ended after the tracer stopped), rejected (the collector took the batch but rejected these, an OTLP partial success).",
		[]string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExported
	ch <- descDropped
}

// Collect implements prometheus.Collector.
func (s *Stats) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descExported, prometheus.CounterValue, float64(s.Exported()))
	for i, r := range exportqueue.DropReasons {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.DroppedFor(i)), r)
	}
}
