package server_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/archway-gateway/archway/gateway/auth"
	"github.com/archway-gateway/archway/gateway/compress"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/cors"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/gateway/static"
)

// edge holds the stateful edge policies a test gateway runs with, wired as gateway/main.go
// wires them.
type edge struct {
	tokens *auth.Manager
	files  *static.Manager
}

// withEdge adds the edge policies (cors, auth, compression, static files) to a test gateway.
// Call it before startGateway, so its cleanup runs after the gateway's.
func withEdge(t testing.TB) (*edge, func(*server.Options)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &edge{tokens: auth.NewManager(ctx, logger, nil), files: static.NewManager(logger)}
	t.Cleanup(func() {
		e.tokens.Close()
		e.files.Close()
		cancel()
	})
	return e, func(o *server.Options) {
		o.Middlewares = []server.MiddlewareFactory{cors.Middleware, e.tokens.Middleware, compress.Middleware}
		o.Terminal = e.files.Handler
		o.OnCommit = func(cfg *config.Config) {
			e.tokens.Commit(cfg)
			e.files.Commit(cfg)
		}
	}
}
