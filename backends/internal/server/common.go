package server

import (
	"context"
	"log/slog"

	"github.com/archway-gateway/archway/backends/internal/config"
)

// ConfigFrom is the Config of a service started from the flags every service shares (listen
// address, body limit, timeouts, Consul, TLS), logging to log and answering GET /health with
// health (its database's ping). Every service's main builds its server this way, so a shared
// flag reaches all four.
func ConfigFrom(service string, c *config.Common, log *slog.Logger, health func(context.Context) error) Config {
	return Config{
		Service: service, Addr: c.Addr, Logger: log, MaxBodyBytes: c.MaxBodyBytes,
		ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, ShutdownTimeout: c.ShutdownTimeout,
		Consul: c.Consul, Advertise: c.Advertise,
		TLSCertFile: c.TLSCert, TLSKeyFile: c.TLSKey, TLSClientCAFile: c.TLSClientCA,
		Health: health,
	}
}
