package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/archway-gateway/archway/gateway/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// runGRPCChecks probes the target with the standard gRPC health protocol (grpc.health.v1
// Health/Check for s.service) until ctx ends: SERVING passes, anything else (NOT_SERVING, an
// unknown service, no answer within the timeout) fails. It uses grpc-go's own client on a
// connection of its own, so a check measures what a gRPC client of the target would see, not
// the gateway's connection to it.
func (t *Target) runGRPCChecks(ctx context.Context, s checkSettings, logger *slog.Logger) {
	set := t.pool.settings
	creds := insecure.NewCredentials()
	if set.Protocol == config.ProtocolH2 {
		creds = credentials.NewTLS(set.h2TLSConfig(t.Addr))
	}
	conn, err := grpc.NewClient("passthrough:///"+t.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			if set.Dial != nil {
				return set.Dial(addr, s.timeout)
			}
			d := net.Dialer{Timeout: s.timeout}
			return d.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithUserAgent("archway-health-check"),
	)
	if err != nil {
		// Only a malformed target fails here; validation refuses those before.
		logger.Error("grpc health check not started", "upstream", t.Upstream, "target", t.Addr, "error", err)
		return
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	req := &healthpb.HealthCheckRequest{Service: s.service}
	t.probeLoop(ctx, s, logger, func() (bool, string) {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		res, err := client.Check(cctx, req)
		if err != nil {
			return false, err.Error()
		}
		if st := res.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
			return false, fmt.Sprintf("grpc health of %q: %s", s.service, st)
		}
		return true, ""
	})
}
