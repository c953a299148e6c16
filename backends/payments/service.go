package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/reqctx"
	"github.com/archway-gateway/archway/backends/internal/server"
	"github.com/archway-gateway/archway/backends/internal/telemetry"
)

// Limits and timings of the payments API.
const (
	maxAmount         = money.Cents(99_999_999_999_99) // 99,999,999,999.99
	maxKeyLen         = 255
	maxExpiryYears    = 20
	HeaderIdempotency = "Idempotency-Key"
	HeaderReplayed    = "Idempotent-Replayed"
	// replayWait is how long a request waits for an identical one that is charging the card.
	replayWait = 8 * time.Second
	replayPoll = 20 * time.Millisecond
	// staleAfter is when a charge attempt that never finished (its process died) may be retried.
	staleAfter = 30 * time.Second
	// chargeTimeout bounds one call to the provider.
	chargeTimeout = 20 * time.Second
)

// service holds the payments endpoints' dependencies. Immutable; safe for concurrent use.
type service struct {
	store    *Store
	verifier *auth.Verifier
	provider Provider
	now      func() time.Time
}

func (s *service) routes(srv *server.Server) {
	srv.Handle(http.MethodPost, "/payments", s.verifier.Require(s.create))
	srv.Handle(http.MethodGet, "/payments/{id}", s.verifier.Require(s.get))
}

type cardRequest struct {
	Number   *string `json:"number"`
	ExpMonth *int    `json:"exp_month"`
	ExpYear  *int    `json:"exp_year"`
	CVC      *string `json:"cvc"`
}

type paymentRequest struct {
	OrderID  *int64       `json:"order_id"`
	Amount   *money.Cents `json:"amount"`
	Currency *string      `json:"currency"`
	Card     *cardRequest `json:"card"`
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// validate checks the request and returns the card and the currency in upper case.
func (r paymentRequest) validate(now time.Time) (Card, string, error) {
	switch {
	case r.OrderID == nil:
		return Card{}, "", api.BadRequest("order_id", "is required")
	case *r.OrderID <= 0:
		return Card{}, "", api.BadRequest("order_id", "must be a positive integer")
	case r.Amount == nil:
		return Card{}, "", api.BadRequest("amount", "is required")
	case *r.Amount <= 0 || *r.Amount > maxAmount:
		return Card{}, "", api.BadRequest("amount", "must be from 0.01 to "+maxAmount.String())
	case r.Currency == nil:
		return Card{}, "", api.BadRequest("currency", "is required")
	}
	currency := strings.ToUpper(*r.Currency)
	if len(currency) != 3 || strings.ContainsFunc(currency, func(c rune) bool { return c < 'A' || c > 'Z' }) {
		return Card{}, "", api.BadRequest("currency", "must be a three-letter ISO 4217 code such as USD")
	}
	card, err := r.Card.validate(now)
	return card, currency, err
}

func (c *cardRequest) validate(now time.Time) (Card, error) {
	if c == nil {
		return Card{}, api.BadRequest("card", "is required")
	}
	if c.Number == nil {
		return Card{}, api.BadRequest("card.number", "is required")
	}
	number := strings.NewReplacer(" ", "", "-", "").Replace(*c.Number)
	if len(number) < 12 || len(number) > 19 || !digitsOnly(number) {
		return Card{}, api.BadRequest("card.number", "must be 12 to 19 digits (spaces and dashes allowed)")
	}
	if !luhnValid(number) {
		return Card{}, api.BadRequest("card.number", "is not a valid card number (Luhn check failed)")
	}
	if c.ExpMonth == nil {
		return Card{}, api.BadRequest("card.exp_month", "is required")
	}
	if *c.ExpMonth < 1 || *c.ExpMonth > 12 {
		return Card{}, api.BadRequest("card.exp_month", "must be from 1 to 12")
	}
	if c.ExpYear == nil {
		return Card{}, api.BadRequest("card.exp_year", "is required")
	}
	year := *c.ExpYear
	if year >= 0 && year < 100 {
		year += 2000
	}
	now = now.UTC()
	if year < 2000 || year > now.Year()+maxExpiryYears {
		return Card{}, api.BadRequest("card.exp_year", fmt.Sprintf("must be a year up to %d", now.Year()+maxExpiryYears))
	}
	// A card is valid through the last day of its expiry month.
	if year < now.Year() || year == now.Year() && *c.ExpMonth < int(now.Month()) {
		return Card{}, api.BadRequest("card.exp_year", fmt.Sprintf("the card expired (%02d/%d)", *c.ExpMonth, year))
	}
	if c.CVC == nil {
		return Card{}, api.BadRequest("card.cvc", "is required")
	}
	if len(*c.CVC) < 3 || len(*c.CVC) > 4 || !digitsOnly(*c.CVC) {
		return Card{}, api.BadRequest("card.cvc", "must be 3 or 4 digits")
	}
	return Card{Number: number, ExpMonth: *c.ExpMonth, ExpYear: year, CVC: *c.CVC}, nil
}

// idempotencyKey reads the required Idempotency-Key header: 1 to 255 visible ASCII characters.
func idempotencyKey(ctx *fasthttp.RequestCtx) (string, error) {
	key := string(ctx.Request.Header.Peek(HeaderIdempotency))
	if key == "" {
		return "", api.BadRequest(HeaderIdempotency, "header is required")
	}
	if len(key) > maxKeyLen || strings.ContainsFunc(key, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return "", api.BadRequest(HeaderIdempotency, fmt.Sprintf("must be 1 to %d visible ASCII characters", maxKeyLen))
	}
	return key, nil
}

// fingerprint identifies a request's content for idempotency from the fields we are allowed to
// keep: neither the full card number nor the CVC, nor any hash of them, is stored.
func fingerprint(orderID int64, amount money.Cents, currency string, card Card) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d|%d|%s|%s|%s|%02d|%d",
		orderID, amount, currency, cardBrand(card.Number), card.Last4(), card.ExpMonth, card.ExpYear))
	return hex.EncodeToString(sum[:])
}

func (s *service) create(ctx *fasthttp.RequestCtx) error {
	userID, err := auth.ClaimsFrom(ctx).UserID()
	if err != nil {
		return err
	}
	key, err := idempotencyKey(ctx)
	if err != nil {
		return err
	}
	var req paymentRequest
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	card, currency, err := req.validate(s.now())
	if err != nil {
		return err
	}
	// Not the request's context: that ends when the server starts shutting down, and a charge
	// that has started must still be recorded. Nor derived from it: fasthttp recycles a
	// RequestCtx when its handler returns. Detach gives a background context that carries only
	// the request's trace span.
	dbctx := reqctx.Detach(ctx)
	p, claimed, err := s.store.Begin(dbctx, NewPayment{
		UserID: userID, IdempotencyKey: key, Fingerprint: fingerprint(*req.OrderID, *req.Amount, currency, card),
		OrderID: *req.OrderID, Amount: *req.Amount, Currency: currency, CardBrand: cardBrand(card.Number), CardLast4: card.Last4(),
	})
	if errors.Is(err, ErrKeyReused) {
		return &api.Error{Status: http.StatusUnprocessableEntity, Err: err,
			Message: "this Idempotency-Key was used for a different request; use a new key for a new payment"}
	}
	if err != nil {
		return err
	}
	// An identical request is charging the card: wait for its outcome, or take over an attempt
	// that stopped without one.
	deadline := time.Now().Add(replayWait)
	for !claimed && p.Status == StatusProcessing {
		if claimed, err = s.store.Claim(dbctx, p.ID, s.now().Add(-staleAfter)); err != nil || claimed {
			break
		}
		if time.Now().After(deadline) {
			return api.Conflict("a request with this Idempotency-Key is still being processed; retry it later")
		}
		time.Sleep(replayPoll)
		if p, err = s.store.Get(dbctx, p.ID); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if claimed {
		if p, err = s.charge(dbctx, p, card); err != nil {
			return err
		}
	} else {
		ctx.Response.Header.Set(HeaderReplayed, "true")
	}
	ctx.Response.Header.Set(fasthttp.HeaderLocation, api.URL(ctx, "/payments/"+strconv.FormatInt(p.ID, 10)))
	return api.WriteJSON(ctx, http.StatusCreated, p)
}

// charge calls the provider for a payment this request has claimed and records the outcome.
func (s *service) charge(ctx context.Context, p Payment, card Card) (Payment, error) {
	cctx, cancel := context.WithTimeout(ctx, chargeTimeout)
	defer cancel()
	// The provider key is the payment's id: a charge retried after an unknown outcome is the
	// same charge to the provider.
	// The provider call is the client span every checkout's trace ends in.
	cctx, span := telemetry.Start(cctx, "provider charge", trace.SpanKindClient,
		attribute.String("payment.provider", fmt.Sprintf("%T", s.provider)), attribute.Int64("payment.id", p.ID))
	out, err := s.provider.Charge(cctx, Charge{Key: "payment-" + strconv.FormatInt(p.ID, 10),
		Amount: p.Amount, Currency: p.Currency, Card: card})
	span.SetAttributes(attribute.Bool("payment.approved", out.Approved))
	telemetry.End(span, err)
	if err != nil {
		if uerr := s.store.Unclaim(ctx, p.ID); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return Payment{}, &api.Error{Status: http.StatusBadGateway, Err: err,
			Message: "the payment provider did not answer; retry with the same Idempotency-Key"}
	}
	return s.store.Complete(ctx, p.ID, out)
}

func (s *service) get(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	claims := auth.ClaimsFrom(ctx)
	userID, err := claims.UserID()
	if err != nil {
		return err
	}
	p, err := s.store.Get(ctx, id)
	// Someone else's payment answers exactly like a missing one.
	if errors.Is(err, ErrNotFound) || err == nil && p.UserID != userID && !claims.IsAdmin() {
		return api.NotFound("payment not found")
	}
	if err != nil {
		return err
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	return api.WriteJSON(ctx, http.StatusOK, p)
}
