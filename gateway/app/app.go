// Package app builds the gateway as the gateway command runs it: the server with the full
// policy table (gateway/policies), one metrics registry for both, and the admin API over them.
// gateway/main.go and bench/cmd/gateway-pprof both build through New, so the profiled gateway
// is the shipped one.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/archway-gateway/archway/gateway/admin"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/policies"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

var _ server.Policies = (*policies.Policies)(nil)

// Gateway is a server.Gateway with its policy table. Shutdown stops both.
type Gateway struct {
	*server.Gateway
	// Policies is the table the gateway's routes are built with.
	Policies *policies.Policies
	// Metrics holds every metric of the gateway and its policies; the admin API serves it.
	Metrics *prometheus.Registry
	logger  *slog.Logger
}

// New builds the gateway for cfg with every policy. configPath is the file Reload re-reads.
func New(cfg *config.Config, configPath string, logger *slog.Logger) (*Gateway, error) {
	reg := prometheus.NewRegistry()
	pol := policies.New(logger)
	if err := pol.Register(reg); err != nil {
		pol.Close()
		return nil, fmt.Errorf("policy metrics: %w", err)
	}
	gw, err := server.New(cfg, server.Options{ConfigPath: configPath, Logger: logger, Registerer: reg, Policies: pol})
	if err != nil {
		pol.Close()
		return nil, err
	}
	return &Gateway{Gateway: gw, Policies: pol, Metrics: reg, logger: logger}, nil
}

// Admin returns the admin API of the gateway.
func (g *Gateway) Admin() http.Handler {
	return admin.Handler(g.Gateway, g.Metrics, g.logger, admin.WithCache(g.Policies.Caches))
}

// Shutdown shuts the server down (see server.Gateway.Shutdown), then releases the policies'
// state, which requests in flight may still have used.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.Gateway.Shutdown(ctx)
	g.Policies.Close()
	return err
}

// DefaultTimerSlack is the gateway's timer slack unless -timer-slack or ARCHWAY_TIMER_SLACK says
// otherwise (SetTimerSlack says why). The benchmark's moderate-load scenario measured it.
const DefaultTimerSlack = 4 * time.Millisecond
