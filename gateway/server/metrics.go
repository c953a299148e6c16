package server

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Version is the gateway's version, set at link time (-ldflags "-X ...server.Version=v1.2.3").
var Version = "dev"

type gatewayMetrics struct {
	reloads *prometheus.CounterVec
}

func newGatewayMetrics(g *Gateway, reg prometheus.Registerer) (*gatewayMetrics, error) {
	m := &gatewayMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "archway_config_reloads_total",
			Help: "Configuration changes attempted, by source (start, api, signal, file) and result (success, failure).",
		}, []string{"source", "result"}),
	}
	goVersion := runtime.Version()
	revision := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "archway_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": Version, "go_version": goVersion, "revision": revision},
	})
	buildInfo.Set(1)
	cs := []prometheus.Collector{
		m.reloads,
		buildInfo,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "archway_config_version", Help: "Version of the running configuration; each successful change adds one.",
		}, func() float64 { return float64(g.version.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "archway_config_last_reload_successful", Help: "1 if the last configuration change succeeded, 0 if it was rejected.",
		}, func() float64 {
			if g.lastReload.Load().OK {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "archway_config_last_reload_timestamp_seconds", Help: "When the configuration was last changed or a change rejected.",
		}, func() float64 { return float64(g.lastReload.Load().At.UnixNano()) / 1e9 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "archway_open_connections", Help: "Client connections open on the public listener.",
		}, func() float64 {
			return float64(g.OpenConnections())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "archway_access_log_dropped_total",
			Help: "Access log lines not written: the output was slower than the requests, a line was longer than a buffer, or the log was closing.",
		}, func() float64 { return float64(g.drops.total(g.entry.Load().AccessLog)) }),
		g.build.metrics,
		upstreamCollector{g},
		tunnelCollector{g},
		http2Collector{g},
		discoveryCollector{g},
		connLimitCollector{g.conns},
		g.build.traceStats,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.reloads.WithLabelValues("start", "success")
	return m, nil
}

func (m *gatewayMetrics) reloadResult(source string, ok bool) {
	result := "success"
	if !ok {
		result = "failure"
	}
	m.reloads.WithLabelValues(source, result).Inc()
}

var (
	upLabels        = []string{"upstream", "target"}
	descUpRequests  = prometheus.NewDesc("archway_upstream_requests_total", "Requests sent to an upstream target (attempts, retries included).", upLabels, nil)
	descUpFailures  = prometheus.NewDesc("archway_upstream_failures_total", "Failed attempts that count toward max_fails (connection errors and timeouts).", upLabels, nil)
	descUpEjections = prometheus.NewDesc("archway_upstream_ejections_total", "Times passive health checking ejected a target.", upLabels, nil)
	descUpInFlight  = prometheus.NewDesc("archway_upstream_in_flight", "Requests in flight to a target.", upLabels, nil)
	descUpOpen      = prometheus.NewDesc("archway_upstream_open_connections", "Connections open to a target, idle or busy.", upLabels, nil)
	descUpDials     = prometheus.NewDesc("archway_upstream_dials_total", "Connections opened to a target.", upLabels, nil)
	descUpHealthy   = prometheus.NewDesc("archway_upstream_target_healthy", "1 when a target receives traffic, 0 while it is ejected.", upLabels, nil)
	descUpTunnels   = prometheus.NewDesc("archway_upstream_tunnels_open", "WebSocket tunnels open to a target.", upLabels, nil)
	descUpChecks    = prometheus.NewDesc("archway_upstream_health_checks_total", "Active health check probes of a target, by result.", []string{"upstream", "target", "result"}, nil)
	descWSOpen      = prometheus.NewDesc("archway_websocket_tunnels_open", "WebSocket tunnels open, by route.", []string{"route"}, nil)
	descWSTotal     = prometheus.NewDesc("archway_websocket_tunnels_total", "WebSocket tunnels opened, by route.", []string{"route"}, nil)
	descWSWaiting   = prometheus.NewDesc("archway_websocket_directions_waiting", "Directions of open WebSocket tunnels waiting in the gateway's epoll set for tunnels, holding no goroutine.", nil, nil)
)

// tunnelCollector reports open and opened WebSocket tunnels, and their idle directions.
type tunnelCollector struct{ g *Gateway }

func (tunnelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWSOpen
	ch <- descWSTotal
	ch <- descWSWaiting
}

func (c tunnelCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descWSWaiting, prometheus.GaugeValue, float64(c.g.build.tunnels.Waiting()))
	open, total := c.g.build.tunnels.Counts()
	for route, n := range total {
		ch <- prometheus.MustNewConstMetric(descWSTotal, prometheus.CounterValue, float64(n), route)
		ch <- prometheus.MustNewConstMetric(descWSOpen, prometheus.GaugeValue, float64(open[route]), route)
	}
}

// upstreamCollector reports every target of the live snapshot from its atomics.
type upstreamCollector struct{ g *Gateway }

func (upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUpRequests, descUpFailures, descUpEjections, descUpInFlight, descUpOpen, descUpDials, descUpHealthy, descUpTunnels, descUpChecks} {
		ch <- d
	}
}

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now().UnixNano()
	for name, u := range c.g.entry.Load().Upstreams {
		for _, t := range u.Targets() {
			s := t.Stats()
			healthy := 0.0
			if t.Health(now) == upstream.Healthy {
				healthy = 1
			}
			ch <- prometheus.MustNewConstMetric(descUpRequests, prometheus.CounterValue, float64(s.Requests), name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpFailures, prometheus.CounterValue, float64(s.Failures), name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpEjections, prometheus.CounterValue, float64(s.Ejections), name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpInFlight, prometheus.GaugeValue, float64(s.InFlight), name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpOpen, prometheus.GaugeValue, float64(s.OpenConns), name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpDials, prometheus.CounterValue, float64(s.Dials), name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpHealthy, prometheus.GaugeValue, healthy, name, t.Addr)
			ch <- prometheus.MustNewConstMetric(descUpTunnels, prometheus.GaugeValue, float64(t.Tunnels()), name, t.Addr)
			if s.ChecksPassed+s.ChecksFailed > 0 {
				ch <- prometheus.MustNewConstMetric(descUpChecks, prometheus.CounterValue, float64(s.ChecksPassed), name, t.Addr, "pass")
				ch <- prometheus.MustNewConstMetric(descUpChecks, prometheus.CounterValue, float64(s.ChecksFailed), name, t.Addr, "fail")
			}
		}
	}
}

var (
	descDiscEndpoints = prometheus.NewDesc("archway_discovery_endpoints", "Endpoints service discovery serves an upstream now.", []string{"upstream"}, nil)
	descDiscStale     = prometheus.NewDesc("archway_discovery_stale", "1 while Consul is unreachable and the last known endpoints are served.", []string{"upstream"}, nil)
	descDiscErrors    = prometheus.NewDesc("archway_discovery_errors_total", "Failed Consul queries for an upstream's service.", []string{"upstream"}, nil)
	descDiscStatus    = prometheus.NewDesc("archway_discovery_status", "Discovery status of an upstream (1 for the current one): ok, kept_last, empty or pending.", []string{"upstream", "status"}, nil)
)

// discoveryCollector reports the state of every upstream fed by Consul.
type discoveryCollector struct{ g *Gateway }

func (discoveryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiscEndpoints, descDiscStale, descDiscErrors, descDiscStatus} {
		ch <- d
	}
}

func (c discoveryCollector) Collect(ch chan<- prometheus.Metric) {
	for name := range c.g.Config().Upstreams {
		st, ok := c.g.DiscoveryState(name)
		if !ok {
			continue
		}
		stale := 0.0
		if st.Stale() {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(descDiscEndpoints, prometheus.GaugeValue, float64(len(st.Endpoints)), name)
		ch <- prometheus.MustNewConstMetric(descDiscStale, prometheus.GaugeValue, stale, name)
		ch <- prometheus.MustNewConstMetric(descDiscErrors, prometheus.CounterValue, float64(st.Errors), name)
		ch <- prometheus.MustNewConstMetric(descDiscStatus, prometheus.GaugeValue, 1, name, st.Status.String())
	}
}
