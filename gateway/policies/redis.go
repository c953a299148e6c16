package policies

import (
	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descBreaker  = prometheus.NewDesc("archway_redis_breaker_open", "1 while the Redis breaker is open and policies use their fallback without trying Redis.", nil, nil)
	descCalls    = prometheus.NewDesc("archway_redis_calls_total", "Calls made to Redis by policies.", nil, nil)
	descFailures = prometheus.NewDesc("archway_redis_failures_total", "Calls to Redis that failed or timed out.", nil, nil)
	descSkipped  = prometheus.NewDesc("archway_redis_skipped_total", "Calls to Redis skipped because the breaker was open.", nil, nil)
	descOpened   = prometheus.NewDesc("archway_redis_breaker_opened_total", "Times the Redis breaker opened.", nil, nil)
)

// redisCollector reports the live shared Redis connection, which belongs to no single row.
type redisCollector struct{ m *redisstore.Manager }

func (redisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBreaker, descCalls, descFailures, descSkipped, descOpened} {
		ch <- d
	}
}

func (c redisCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Live()
	if s == nil {
		return
	}
	open := 0.0
	if s.BreakerOpen() {
		open = 1
	}
	ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, open)
	ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(s.Calls.Load()))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.Failures.Load()))
	ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(s.Skipped.Load()))
	ch <- prometheus.MustNewConstMetric(descOpened, prometheus.CounterValue, float64(s.Opened.Load()))
}
