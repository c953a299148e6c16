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

// Detach returns ctx, or a fresh background context when ctx is a *fasthttp.RequestCtx.
func Detach(ctx context.Context) context.Context {
	if _, ok := ctx.(*fasthttp.RequestCtx); ok {
		return context.Background()
	}
	return ctx
}
