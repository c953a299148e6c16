package server_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/archway-gateway/archway/gateway/policies"
	"github.com/archway-gateway/archway/gateway/server"
)

// withPolicies gives a test gateway the full policy table, as gateway/main.go builds it. Call
// it before startGateway, so its cleanup (closing the table) runs after the gateway's shutdown.
func withPolicies(t testing.TB) (*policies.Policies, func(*server.Options)) {
	t.Helper()
	p := policies.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(p.Close)
	return p, func(o *server.Options) { o.Policies = p }
}
