package server

import (
	"github.com/archway-gateway/archway/gateway/h2"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descH2Conns = prometheus.NewDesc("archway_http2_connections",
		"HTTP/2 client connections open now (h2 and h2c), over every listener.", nil, nil)
	descH2Streams = prometheus.NewDesc("archway_http2_streams_total",
		"HTTP/2 streams from clients, by outcome: completed, reset (by the client, or its connection ended, before the response was whole), refused (over max_concurrent_streams).",
		[]string{"outcome"}, nil)
)

// http2Collector reports the HTTP/2 servers' connection and stream counts. A gateway without
// an HTTP/2 listener reports nothing.
type http2Collector struct{ g *Gateway }

func (http2Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descH2Conns
	ch <- descH2Streams
}

func (c http2Collector) Collect(ch chan<- prometheus.Metric) {
	var conns int
	var streams [h2.NumStreamOutcomes]uint64
	served := false
	for _, rt := range c.g.listeners {
		if rt.h2 == nil {
			continue
		}
		served = true
		conns += rt.h2.OpenConnections()
		for o := range h2.NumStreamOutcomes {
			streams[o] += rt.h2.Streams(o)
		}
	}
	if !served {
		return
	}
	ch <- prometheus.MustNewConstMetric(descH2Conns, prometheus.GaugeValue, float64(conns))
	for o, n := range streams {
		ch <- prometheus.MustNewConstMetric(descH2Streams, prometheus.CounterValue, float64(n), h2.StreamOutcomeNames[o])
	}
}
