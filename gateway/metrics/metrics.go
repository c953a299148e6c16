// Package metrics holds the gateway's Prometheus metrics. The request path only touches atomics
// and client_golang histograms resolved when a config snapshot is built, so recording a request
// takes no lock and allocates nothing; series are produced at scrape time by collectors that
// read those atomics.
package metrics

import (
	"encoding/hex"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/routestate"
	"github.com/prometheus/client_golang/prometheus"
)

// Methods are the method label values: protocol.Methods, indexed like them, and a last one
// that stands for any other method.
var Methods = func() (m [len(protocol.Methods) + 1]string) {
	copy(m[:], protocol.Methods[:])
	m[len(m)-1] = "OTHER"
	return m
}()

const numCodes = 600

// DurationBuckets are the request duration histogram buckets, in seconds: fine below 10 ms where
// a gateway's own cost lives, coarse up to the 30 s proxy timeout.
var DurationBuckets = durationBuckets[:]

// RouteStats are the counters of one route. They outlive config snapshots: a reload that keeps
// a route keeps its counters. Safe for concurrent use.
type RouteStats struct {
	Name     string
	requests [protocol.NumWires][len(Methods)][numCodes]atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	duration prometheus.Histogram
	upstream prometheus.Histogram
	// exemplars limits how often the duration histogram's buckets take exemplars (exemplar.go).
	exemplars exemplarClock

	// grpcErrors counts gRPC calls the gateway answered itself, by gRPC status (grpc.go).
	grpcErrors [numGRPCCodes]atomic.Uint64
}

// Record counts one finished request that arrived over wire. method is an index into Methods
// (-1 for other methods).
func (s *RouteStats) Record(wire protocol.Wire, method, code int, d, upstream time.Duration, in, out int64) {
	s.count(wire, method, code, upstream, in, out)
	s.duration.Observe(d.Seconds())
}

// RecordTraced is Record for a request that was traced: the duration sample carries the trace
// id as its exemplar (OpenMetrics), so a dashboard jumps from a slow bucket to a trace. Only
// sampled requests get here; building the exemplar allocates, so each bucket takes a new one
// at most every 100 ms (exemplar.go).
func (s *RouteStats) RecordTraced(wire protocol.Wire, method, code int, d, upstream time.Duration, in, out int64, traceID [16]byte) {
	s.count(wire, method, code, upstream, in, out)
	if sec := d.Seconds(); s.exemplars.due(sec, time.Now().UnixNano()) {
		s.duration.(prometheus.ExemplarObserver).ObserveWithExemplar(sec, prometheus.Labels{"trace_id": hex.EncodeToString(traceID[:])})
	} else {
		s.duration.Observe(sec)
	}
}

// count is what Record and RecordTraced share: everything but the duration sample.
func (s *RouteStats) count(wire protocol.Wire, method, code int, upstream time.Duration, in, out int64) {
	if wire >= protocol.NumWires {
		wire = protocol.WireHTTP1
	}
	if method < 0 || method >= len(Methods) {
		method = len(Methods) - 1
	}
	if code < 0 || code >= numCodes {
		code = 0
	}
	s.requests[wire][method][code].Add(1)
	// Adding nothing is skipped: an atomic add on a line every core writes costs even then, and
	// most requests have no body.
	if in > 0 {
		s.bytesIn.Add(uint64(in))
	}
	if out > 0 {
		s.bytesOut.Add(uint64(out))
	}
	if upstream > 0 {
		s.upstream.Observe(upstream.Seconds())
	}
}

// Requests returns how many requests with method index m ended with code, over any protocol.
func (s *RouteStats) Requests(m, code int) uint64 {
	var n uint64
	for w := range s.requests {
		n += s.requests[w][m][code].Load()
	}
	return n
}

// RequestsOver returns how many requests over wire with method index m ended with code.
func (s *RouteStats) RequestsOver(wire protocol.Wire, m, code int) uint64 {
	return s.requests[wire][m][code].Load()
}

// Registry keeps RouteStats by route name across snapshots.
type Registry struct {
	routes *routestate.Registry[*RouteStats]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{routes: routestate.New[*RouteStats]()} }

// Route returns the stats of the named route, creating them on first use.
func (r *Registry) Route(name string) *RouteStats {
	return r.routes.Use(name, func() *RouteStats { return newRouteStats(name) }, nil)
}

func newRouteStats(name string) *RouteStats {
	return &RouteStats{
		Name: name,
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "archway_request_duration_seconds", Help: "Time from the first byte of a request to the handler's end, by route.",
			Buckets: DurationBuckets, ConstLabels: prometheus.Labels{"route": name},
		}),
		upstream: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "archway_upstream_duration_seconds", Help: "Time spent waiting for upstream responses, by route.",
			Buckets: DurationBuckets, ConstLabels: prometheus.Labels{"route": name},
		}),
	}
}

// SetLive makes the given routes the ones /metrics reports, in name order, and forgets all
// others, so a route removed by a reload stops being exported (its counters would otherwise
// linger forever).
func (r *Registry) SetLive(routes []*RouteStats) {
	names := make([]string, len(routes))
	for i, s := range routes {
		names[i] = s.Name
	}
	sort.Strings(names)
	r.routes.Commit(names)
}

var (
	descRequests = prometheus.NewDesc("archway_requests_total", "Requests answered, by route, method, status code and protocol (HTTP/1.1, HTTP/2).", []string{"route", "method", "code", "protocol"}, nil)
	descBytesIn  = prometheus.NewDesc("archway_request_body_bytes_total", "Request body bytes received, by route.", []string{"route"}, nil)
	descBytesOut = prometheus.NewDesc("archway_response_body_bytes_total", "Response body bytes sent, by route.", []string{"route"}, nil)
)

// Describe implements prometheus.Collector. The collector is unchecked: its label sets vary
// with the configuration.
func (r *Registry) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	for _, s := range r.routes.Live() {
		for w := range s.requests {
			for m := range Methods {
				for code := range numCodes {
					if n := s.requests[w][m][code].Load(); n > 0 {
						ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), s.Name, Methods[m], strconv.Itoa(code), protocol.WireNames[w])
					}
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(descBytesIn, prometheus.CounterValue, float64(s.bytesIn.Load()), s.Name)
		ch <- prometheus.MustNewConstMetric(descBytesOut, prometheus.CounterValue, float64(s.bytesOut.Load()), s.Name)
		s.collectGRPC(ch)
		s.duration.Collect(ch)
		s.upstream.Collect(ch)
	}
}
