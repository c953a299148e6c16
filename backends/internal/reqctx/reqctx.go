// Package reqctx keeps fasthttp's RequestCtx out of libraries that outlive a handler.
//
// *fasthttp.RequestCtx implements context.Context, so handlers pass it wherever a context is
// wanted. But fasthttp recycles a RequestCtx as soon as the handler returns, while libraries
// such as database/sql and net/http keep reading their context from goroutines of their own (to
// propagate cancellation) after the call itself has returned: a data race on the next request's
// state. Detach swaps such a context for one that does not reference it. Nothing is lost by it:
// fasthttp never cancels a RequestCtx per request (its Done fires only at server shutdown).
package reqctx

import (
	"context"

	"github.com/valyala/fasthttp"
)

// contextKey is the user value under which Attach keeps a request's own context.
const contextKey = "archway.reqctx"

// Detach returns ctx, or for a *fasthttp.RequestCtx the context attached to the request (its
// trace span), or a fresh background context.
func Detach(ctx context.Context) context.Context {
	if rc, ok := ctx.(*fasthttp.RequestCtx); ok {
		if c, ok := rc.UserValue(contextKey).(context.Context); ok {
			return c
		}
		return context.Background()
	}
	return ctx
}

// Attach keeps ctx, which must not reference rc, as the context Detach returns for rc until the
// request ends: it carries the request's trace span to the database and HTTP clients.
func Attach(rc *fasthttp.RequestCtx, ctx context.Context) { rc.SetUserValue(contextKey, ctx) }
