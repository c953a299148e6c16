package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// numGRPCCodes is the number of gRPC status codes (OK 0 to UNAUTHENTICATED 16).
const numGRPCCodes = 17

var descGRPCErrors = prometheus.NewDesc("archway_grpc_errors_total",
	"gRPC calls the gateway answered itself with an error status (no route or target, rate limit, auth, timeout), by route and grpc_status; archway_requests_total counts them with code 200, as sent.",
	[]string{"route", "grpc_status"}, nil)

// grpcLabels are the grpc_status label values, made once.
var grpcLabels = func() (l [numGRPCCodes]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

// RecordGRPCError counts a gRPC call the gateway answered itself with status (a gRPC code).
func (s *RouteStats) RecordGRPCError(status int) {
	if status < 0 || status >= numGRPCCodes {
		status = 2 // UNKNOWN
	}
	s.grpcErrors[status].Add(1)
}

// GRPCErrors returns how many gRPC calls the gateway answered itself with status.
func (s *RouteStats) GRPCErrors(status int) uint64 { return s.grpcErrors[status].Load() }

func (s *RouteStats) collectGRPC(ch chan<- prometheus.Metric) {
	for code := range s.grpcErrors {
		if n := s.grpcErrors[code].Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(descGRPCErrors, prometheus.CounterValue, float64(n), s.Name, grpcLabels[code])
		}
	}
}
