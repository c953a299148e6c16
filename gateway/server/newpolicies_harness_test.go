package server_test

import (
	"testing"

	"github.com/archway-gateway/archway/gateway/access"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/forwardauth"
	"github.com/archway-gateway/archway/gateway/rewrite"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/gateway/split"
)

// routePolicies are the access, forward_auth, redirect, rewrite and split policies of a test
// gateway, wired as gateway/main.go wires them.
type routePolicies struct {
	auth   *forwardauth.Manager
	splits *split.Registry
}

// withRoutePolicies adds access, forward_auth, redirect and rewrite in front of any other
// policy and split just before the forwarder. Call it before startGateway.
func withRoutePolicies(t testing.TB) (*routePolicies, func(*server.Options)) {
	t.Helper()
	p := &routePolicies{auth: forwardauth.NewManager(), splits: split.NewRegistry()}
	t.Cleanup(p.auth.Close)
	return p, func(o *server.Options) {
		o.Middlewares = append([]server.MiddlewareFactory{access.Middleware, p.auth.Middleware, rewrite.RedirectMiddleware, rewrite.RewriteMiddleware},
			o.Middlewares...)
		o.Middlewares = append(o.Middlewares, p.splits.Middleware)
		prev := o.OnCommit
		o.OnCommit = func(cfg *config.Config) {
			if prev != nil {
				prev(cfg)
			}
			p.splits.Commit(cfg)
		}
	}
}
