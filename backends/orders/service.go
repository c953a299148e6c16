package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/reqctx"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// Limits of the orders API.
const (
	defaultLimit  = 20
	maxLimit      = 100
	maxPage       = 1_000_000
	maxItems      = 50
	maxQuantity   = 1000
	maxAddressLen = 500
	// claimMargin is added to the payments client's worst case to make a payment's claim on an
	// order (see payClaim).
	claimMargin = 30 * time.Second
)

// transitions are the allowed status changes.
var transitions = map[string][]string{
	StatusPending: {StatusPaid, StatusCancelled},
	StatusPaid:    {StatusShipped},
	StatusShipped: {StatusDelivered},
}

// adminOnly are the statuses only an admin may set by PUT: paid without a payment, and the
// fulfilment steps. Customers pay with POST /orders/{id}/pay and may cancel.
var adminOnly = map[string]bool{StatusPaid: true, StatusShipped: true, StatusDelivered: true}

func allowed(from, to string) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// service holds the orders endpoints' dependencies. Immutable after routes; safe for concurrent
// use.
type service struct {
	store    *Store
	verifier *auth.Verifier
	products *productsClient
	payments *paymentsClient
	feed     *Feed
	currency string
	log      *slog.Logger
	ws       wsSettings
	upgrader websocket.FastHTTPUpgrader
}

func (s *service) routes(srv *server.Server) {
	srv.Handle(http.MethodPost, "/orders", s.verifier.Require(s.create))
	srv.Handle(http.MethodGet, "/orders", s.verifier.Require(s.list))
	srv.Handle(http.MethodGet, "/orders/{id}", s.verifier.Require(s.get))
	srv.Handle(http.MethodPut, "/orders/{id}/status", s.verifier.Require(s.setStatus))
	srv.Handle(http.MethodPost, "/orders/{id}/pay", s.verifier.Require(s.pay))
	srv.Handle(http.MethodGet, "/ws/orders", s.websocket)
	s.initWebSocket(srv)
}

// bearerToken is the request's token as Authenticate accepted it, to forward to products and
// payments so they act for the same user.
func bearerToken(ctx *fasthttp.RequestCtx) string {
	authz := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if i := bytes.IndexByte(authz, ' '); i >= 0 {
		return string(bytes.TrimSpace(authz[i+1:]))
	}
	return ""
}

// peerContext is the context of the calls a request makes to other services and of the writes
// that follow them. Not the request's own: that ends when the server starts shutting down, and
// stock that was reserved must still be recorded or released. Nor derived from it: fasthttp
// recycles a RequestCtx when its handler returns, while net/http may still read values of a
// request's context from a background dial. Every call has its own timeout. reqctx.Detach
// gives such a background context, carrying only the request's trace span.
func peerContext(ctx *fasthttp.RequestCtx) context.Context { return reqctx.Detach(ctx) }

// newRef returns a random order reference, the order_id of its reservations at products.
func newRef() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "ord-" + hex.EncodeToString(b[:])
}

func unavailable(service string, err error) error {
	return &api.Error{Status: http.StatusServiceUnavailable, Err: err,
		Message: service + " service unavailable; try again"}
}

type itemRequest struct {
	ProductID *int64 `json:"product_id"`
	Quantity  *int64 `json:"quantity"`
}

type orderRequest struct {
	Items           []itemRequest `json:"items"`
	ShippingAddress *string       `json:"shipping_address"`
}

type line struct{ productID, quantity int64 }

func (r orderRequest) validate() ([]line, string, error) {
	if len(r.Items) == 0 {
		return nil, "", api.BadRequest("items", "at least one item is required")
	}
	if len(r.Items) > maxItems {
		return nil, "", api.BadRequest("items", fmt.Sprintf("at most %d items", maxItems))
	}
	lines := make([]line, len(r.Items))
	seen := map[int64]bool{}
	for i, it := range r.Items {
		field := fmt.Sprintf("items[%d]", i)
		switch {
		case it.ProductID == nil:
			return nil, "", api.BadRequest(field+".product_id", "is required")
		case *it.ProductID <= 0:
			return nil, "", api.BadRequest(field+".product_id", "must be a positive integer")
		case seen[*it.ProductID]:
			return nil, "", api.BadRequest(field+".product_id", fmt.Sprintf("product %d is listed twice; give one line per product", *it.ProductID))
		case it.Quantity == nil:
			return nil, "", api.BadRequest(field+".quantity", "is required")
		case *it.Quantity < 1 || *it.Quantity > maxQuantity:
			return nil, "", api.BadRequest(field+".quantity", fmt.Sprintf("must be an integer from 1 to %d", maxQuantity))
		}
		seen[*it.ProductID] = true
		lines[i] = line{*it.ProductID, *it.Quantity}
	}
	if r.ShippingAddress == nil || strings.TrimSpace(*r.ShippingAddress) == "" {
		return nil, "", api.BadRequest("shipping_address", "is required")
	}
	addr := strings.TrimSpace(*r.ShippingAddress)
	if !utf8.ValidString(addr) || utf8.RuneCountInString(addr) > maxAddressLen {
		return nil, "", api.BadRequest("shipping_address", fmt.Sprintf("must be at most %d characters", maxAddressLen))
	}
	if strings.ContainsFunc(addr, func(c rune) bool { return (c < ' ' && c != '\n') || c == 0x7f }) {
		return nil, "", api.BadRequest("shipping_address", "must not contain control characters other than line breaks")
	}
	return lines, addr, nil
}

// create places an order: prices come from products, stock is reserved line by line under a
// fresh order reference, and only when every line is reserved is the order stored. Any failure
// releases what was reserved.
func (s *service) create(ctx *fasthttp.RequestCtx) error {
	userID, err := auth.ClaimsFrom(ctx).UserID()
	if err != nil {
		return err
	}
	var req orderRequest
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	lines, addr, err := req.validate()
	if err != nil {
		return err
	}
	pctx, token, requestID := peerContext(ctx), bearerToken(ctx), api.RequestID(ctx)
	items := make([]Item, len(lines))
	var total money.Cents
	for i, l := range lines {
		p, err := s.products.Product(pctx, requestID, l.productID)
		switch {
		case errors.Is(err, errUnknownProduct):
			return api.NotFound(fmt.Sprintf("product %d not found", l.productID))
		case errors.Is(err, errUnavailable):
			return unavailable("products", err)
		case err != nil:
			return err
		}
		items[i] = Item{ProductID: l.productID, Name: p.Name, Quantity: l.quantity, UnitPrice: p.Price}
		total += p.Price * money.Cents(l.quantity)
	}
	ref := newRef()
	var reserved []int64
	for _, l := range lines {
		err := s.products.Reserve(pctx, token, requestID, l.productID, ref, l.quantity)
		if err != nil {
			// A reserve whose outcome is unknown may have taken stock: release it too (a
			// release of nothing is harmless, and a late reserve after it is refused).
			if !errors.Is(err, errUnknownProduct) && !isStockError(err) {
				reserved = append(reserved, l.productID)
			}
			s.releaseAll(pctx, token, requestID, ref, reserved)
			var stock *stockError
			switch {
			case errors.As(err, &stock):
				return api.Conflict(fmt.Sprintf("product %d: %s", l.productID, stock.message))
			case errors.Is(err, errUnknownProduct):
				return api.NotFound(fmt.Sprintf("product %d not found", l.productID))
			case errors.Is(err, errUnavailable):
				return unavailable("products", err)
			}
			return err
		}
		reserved = append(reserved, l.productID)
	}
	o, err := s.store.Create(pctx, NewOrder{Ref: ref, UserID: userID, Items: items, ShippingAddress: addr, Currency: s.currency})
	if err != nil {
		s.releaseAll(pctx, token, requestID, ref, reserved)
		return err
	}
	s.feed.Kick()
	ctx.Response.Header.Set(fasthttp.HeaderLocation, api.URL(ctx, "/orders/"+strconv.FormatInt(o.ID, 10)))
	return api.WriteJSON(ctx, http.StatusCreated, o)
}

func isStockError(err error) bool {
	var stock *stockError
	return errors.As(err, &stock)
}

// releaseAll returns what the order ref reserved of each product, logging what it cannot
// (products keeps those units reserved until someone releases them with an admin token).
func (s *service) releaseAll(ctx context.Context, token, requestID, ref string, productIDs []int64) error {
	var errs []error
	for _, id := range productIDs {
		if err := s.products.Release(ctx, token, requestID, id, ref); err != nil {
			s.log.ErrorContext(ctx, "releasing reserved stock failed", "request_id", requestID, "order_ref", ref, "product_id", id,
				"error", err.Error())
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *service) list(ctx *fasthttp.RequestCtx) error {
	userID, err := auth.ClaimsFrom(ctx).UserID()
	if err != nil {
		return err
	}
	limit, err := api.QueryInt(ctx, "limit", defaultLimit, 1, maxLimit)
	if err != nil {
		return err
	}
	page, err := api.QueryInt(ctx, "page", 1, 1, maxPage)
	if err != nil {
		return err
	}
	orders, total, err := s.store.List(ctx, userID, limit, (page-1)*limit)
	if err != nil {
		return err
	}
	ctx.Response.Header.Set("X-Total-Count", strconv.Itoa(total))
	ctx.Response.Header.Set("Link", paginationLinks(api.URL(ctx, ""), page, limit, total))
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	return api.WriteJSON(ctx, http.StatusOK, orders)
}

// paginationLinks renders RFC 8288 Link values: first and last always, prev and next when they
// exist. base is where the service is reached (api.URL of "").
func paginationLinks(base string, page, limit, total int) string {
	last := max(1, (total+limit-1)/limit)
	link := func(p int, rel string) string {
		return fmt.Sprintf(`<%s/orders?limit=%d&page=%d>; rel="%s"`, base, limit, p, rel)
	}
	links := []string{link(1, "first")}
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(last, "last"))
	return strings.Join(links, ", ")
}

// visibleOrder loads the order in the path for its owner or an admin; for anyone else it is the
// same 404 as a missing order, so ids of other users' orders are not revealed.
func (s *service) visibleOrder(ctx *fasthttp.RequestCtx) (Order, *auth.Claims, error) {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return Order{}, nil, err
	}
	claims := auth.ClaimsFrom(ctx)
	userID, err := claims.UserID()
	if err != nil {
		return Order{}, nil, err
	}
	o, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) || err == nil && o.UserID != userID && !claims.IsAdmin() {
		return Order{}, nil, api.NotFound("order not found")
	}
	return o, claims, err
}

func (s *service) get(ctx *fasthttp.RequestCtx) error {
	o, _, err := s.visibleOrder(ctx)
	if err != nil {
		return err
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	return api.WriteJSON(ctx, http.StatusOK, o)
}

// changedError explains why a conditional change of the order found it changed.
func (s *service) changedError(ctx context.Context, id int64, want string) error {
	o, err := s.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if o.Status == StatusPending && time.Now().Before(o.PayingUntil) {
		return api.Conflict("a payment for this order is in progress")
	}
	return api.Conflict(fmt.Sprintf("cannot change status from %s to %s", o.Status, want))
}

func (s *service) setStatus(ctx *fasthttp.RequestCtx) error {
	var req struct {
		Status *string `json:"status"`
	}
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	if req.Status == nil {
		return api.BadRequest("status", "is required")
	}
	to := *req.Status
	switch to {
	case StatusPending, StatusPaid, StatusShipped, StatusDelivered, StatusCancelled:
	default:
		return api.BadRequest("status", "must be one of pending, paid, shipped, delivered, cancelled")
	}
	o, claims, err := s.visibleOrder(ctx)
	if err != nil {
		return err
	}
	if adminOnly[to] && !claims.IsAdmin() {
		return api.Forbidden("only an admin can mark an order " + to)
	}
	pctx := peerContext(ctx)
	if to == StatusCancelled && o.Status == StatusCancelled && !o.StockReleased {
		return s.releaseCancelled(ctx, o) // a retry of a cancellation whose release failed
	}
	if !allowed(o.Status, to) {
		return api.Conflict(fmt.Sprintf("cannot change status from %s to %s", o.Status, to))
	}
	// The status changes first, conditionally, so a payment starting now cannot charge an order
	// whose stock is on its way back.
	id := o.ID
	o, err = s.store.Transition(pctx, id, o.Status, to)
	if errors.Is(err, ErrChanged) {
		return s.changedError(pctx, id, to)
	}
	if err != nil {
		return err
	}
	s.feed.Kick()
	if to == StatusCancelled {
		return s.releaseCancelled(ctx, o)
	}
	return api.WriteJSON(ctx, http.StatusOK, o)
}

// releaseCancelled returns a cancelled order's stock, with the caller's token (the owner's, or
// an admin's), and answers with the order.
func (s *service) releaseCancelled(ctx *fasthttp.RequestCtx, o Order) error {
	pctx := peerContext(ctx)
	ids := make([]int64, len(o.Items))
	for i, it := range o.Items {
		ids[i] = it.ProductID
	}
	if err := s.releaseAll(pctx, bearerToken(ctx), api.RequestID(ctx), o.Ref, ids); err != nil {
		return &api.Error{Status: http.StatusServiceUnavailable, Err: err,
			Message: "the order is cancelled, but its stock could not be returned yet; repeat this request to retry"}
	}
	if err := s.store.MarkStockReleased(pctx, o.ID); err != nil {
		return err
	}
	o.StockReleased = true
	return api.WriteJSON(ctx, http.StatusOK, o)
}

// payClaim is how long a payment call owns an order: longer than the payments client can take
// with all its retries, so a claim only lapses when its instance died mid-payment.
func (s *service) payClaim() time.Duration { return s.payments.c.worstCase() + claimMargin }

// pay charges the order's total to a card through payments. The idempotency key is derived from
// the order and its attempt number, which moves on only after a decline: a retry after an
// unknown outcome reuses the key, so an order is never charged twice.
func (s *service) pay(ctx *fasthttp.RequestCtx) error {
	var req struct {
		Card json.RawMessage `json:"card"`
	}
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	if card := bytes.TrimSpace(req.Card); len(card) == 0 || bytes.Equal(card, []byte("null")) {
		return api.BadRequest("card", "is required")
	}
	o, claims, err := s.visibleOrder(ctx)
	if err != nil {
		return err
	}
	if userID, _ := claims.UserID(); o.UserID != userID {
		return api.Forbidden("only the order's owner can pay it")
	}
	if o.Status != StatusPending {
		return api.Conflict(fmt.Sprintf("the order is %s; only pending orders can be paid", o.Status))
	}
	if o.Total <= 0 {
		return api.Conflict("the order's total is 0.00: there is nothing to charge (an admin can mark it paid)")
	}
	pctx := peerContext(ctx)
	attempt, err := s.store.ClaimPayment(pctx, o.ID, s.payClaim())
	if errors.Is(err, ErrChanged) {
		return s.changedError(pctx, o.ID, StatusPaid)
	}
	if err != nil {
		return err
	}
	key := fmt.Sprintf("order-%d-%s-attempt-%d", o.ID, o.Ref, attempt)
	res, err := s.payments.Charge(pctx, bearerToken(ctx), api.RequestID(ctx), key,
		chargeRequest{OrderID: o.ID, Amount: o.Total, Currency: o.Currency, Card: req.Card})
	declined := err == nil && res.Status != "succeeded"
	if err != nil || declined {
		if eerr := s.store.EndPayment(pctx, o.ID, attempt, declined); eerr != nil {
			return errors.Join(err, eerr)
		}
	}
	var apiErr *api.Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.Is(err, errPaymentKeyConflict):
		return api.Conflict("an earlier payment attempt for this order used other card details and its outcome " +
			"is not known yet; repeat it with the same card")
	case errors.Is(err, errUnavailable):
		return unavailable("payments", err)
	case err != nil:
		return err
	case declined:
		reason := "declined"
		if res.DeclineReason != nil {
			reason = *res.DeclineReason
		}
		return &api.Error{Status: http.StatusPaymentRequired, Message: "payment declined: " + reason}
	}
	paid, err := s.store.MarkPaid(pctx, o.ID, attempt, res.ID)
	if err != nil {
		// Only possible when this instance held the claim past payClaim and the order changed.
		return fmt.Errorf("record payment %d of order %d: %w", res.ID, o.ID, err)
	}
	s.feed.Kick()
	return api.WriteJSON(ctx, http.StatusOK, paid)
}
