package reqctx

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestDetachDropsOnlyTheRequestCtx(t *testing.T) {
	var rc fasthttp.RequestCtx
	if got := Detach(&rc); got == context.Context(&rc) {
		t.Fatal("a RequestCtx was passed through")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if Detach(ctx) != ctx {
		t.Fatal("an ordinary context was replaced")
	}
}
