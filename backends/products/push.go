package main

import (
	"errors"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/reqctx"
)

// pushHandler takes the order events the orders service pushes without a broker (POST
// ev.PushPath, the broker's envelope signed with the shared secret) and applies them exactly as
// the broker's consumer does: same handler, same idempotency record, so an event pushed twice,
// or arriving both ways, is applied once.
//
// It answers 204 once the event is applied (or was before), 401 to a bad signature, 422 to an
// event no retry can fix (orders then skips it, as a broker dead-letters it), and 500 to a
// failure worth retrying (orders keeps the event in its outbox and tries again).
func pushHandler(store *Store, secret []byte) func(ctx *fasthttp.RequestCtx) error {
	return func(ctx *fasthttp.RequestCtx) error {
		body := ctx.PostBody()
		if !ev.CheckSignature(secret, body, string(ctx.Request.Header.Peek(ev.SignatureHeader))) {
			return api.Unauthorized("missing or invalid " + ev.SignatureHeader)
		}
		e, err := ev.Decode(body)
		if err == nil {
			err = store.HandleOrderEvent(reqctx.Detach(ctx), e)
		}
		if errors.Is(err, ev.ErrPermanent) {
			return &api.Error{Status: http.StatusUnprocessableEntity, Message: err.Error(), Err: err}
		}
		if err != nil {
			return err
		}
		ctx.SetStatusCode(http.StatusNoContent)
		return nil
	}
}
