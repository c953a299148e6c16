package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/money"
)

// Errors of the peer clients that callers map to statuses.
var (
	errUnknownProduct = errors.New("unknown product")
	// errPaymentKeyConflict: payments holds another request under this attempt's idempotency key.
	errPaymentKeyConflict = errors.New("payment idempotency key holds another request")
)

// stockError is products' 409 for a reservation: not enough stock (or, never expected with
// random order refs, a conflicting reservation). Its message is products' own.
type stockError struct{ message string }

func (e *stockError) Error() string { return e.message }

// productsClient calls the products service. Reserve and release are idempotent per (order ref,
// product), so every call may be retried.
type productsClient struct{ c *peerClient }

// catalogProduct is what an order needs of a product.
type catalogProduct struct {
	ID    int64       `json:"id"`
	Name  string      `json:"name"`
	Price money.Cents `json:"price"`
}

func unexpected(service string, r peerReply) error {
	return fmt.Errorf("%s answered %d: %s", service, r.status, r.errorMessage())
}

// Product returns the product with id (its current name and price), or errUnknownProduct.
func (p *productsClient) Product(ctx context.Context, requestID string, id int64) (catalogProduct, error) {
	r, err := p.c.do(ctx, peerCall{method: http.MethodGet, path: "/products/" + strconv.FormatInt(id, 10),
		requestID: requestID, idempotent: true})
	if err != nil {
		return catalogProduct{}, err
	}
	switch r.status {
	case http.StatusOK:
		var prod catalogProduct
		if err := json.Unmarshal(r.body, &prod); err != nil || prod.ID != id {
			return catalogProduct{}, fmt.Errorf("products: unexpected product body %q: %v", r.body, err)
		}
		return prod, nil
	case http.StatusNotFound:
		return catalogProduct{}, errUnknownProduct
	}
	return catalogProduct{}, unexpected("products", r)
}

type reservationBody struct {
	Quantity int64  `json:"quantity,omitempty"`
	OrderID  string `json:"order_id"`
}

// Reserve takes quantity units of the product for the order ref, with the end user's token. A
// repeated reserve (a retry) is a replay at products and takes nothing more.
func (p *productsClient) Reserve(ctx context.Context, token, requestID string, productID int64, ref string, quantity int64) error {
	r, err := p.c.do(ctx, peerCall{method: http.MethodPost, path: "/products/" + strconv.FormatInt(productID, 10) + "/reserve",
		body: reservationBody{Quantity: quantity, OrderID: ref}, token: token, requestID: requestID, idempotent: true})
	if err != nil {
		return err
	}
	switch r.status {
	case http.StatusCreated, http.StatusOK:
		return nil
	case http.StatusNotFound:
		return errUnknownProduct
	case http.StatusConflict:
		return &stockError{message: r.errorMessage()}
	}
	return unexpected("products", r)
}

// Release returns what the order ref reserved of the product. Nothing reserved (404) is not an
// error: a release after an unknown reserve outcome may find nothing.
func (p *productsClient) Release(ctx context.Context, token, requestID string, productID int64, ref string) error {
	r, err := p.c.do(ctx, peerCall{method: http.MethodPost, path: "/products/" + strconv.FormatInt(productID, 10) + "/release",
		body: reservationBody{OrderID: ref}, token: token, requestID: requestID, idempotent: true})
	if err != nil {
		return err
	}
	switch r.status {
	case http.StatusOK, http.StatusNotFound:
		return nil
	}
	return unexpected("products", r)
}

// paymentsClient calls the payments service. A charge carries an idempotency key, so it may be
// retried: payments charges once per key.
type paymentsClient struct{ c *peerClient }

type chargeRequest struct {
	OrderID  int64           `json:"order_id"`
	Amount   money.Cents     `json:"amount"`
	Currency string          `json:"currency"`
	Card     json.RawMessage `json:"card"`
}

// paymentResult is what orders needs of payments' answer.
type paymentResult struct {
	ID            int64   `json:"id"`
	Status        string  `json:"status"`
	DeclineReason *string `json:"decline_reason"`
}

// Charge asks payments to charge card for the order under key, with the end user's token. A 400
// from payments (a bad card) comes back as the same *api.Error, so the client learns which field.
func (p *paymentsClient) Charge(ctx context.Context, token, requestID, key string, req chargeRequest) (paymentResult, error) {
	r, err := p.c.do(ctx, peerCall{method: http.MethodPost, path: "/payments", body: req, token: token,
		requestID: requestID, header: map[string]string{"Idempotency-Key": key}, idempotent: true})
	if err != nil {
		return paymentResult{}, err
	}
	switch r.status {
	case http.StatusCreated:
		var res paymentResult
		if err := json.Unmarshal(r.body, &res); err != nil || res.ID == 0 {
			return paymentResult{}, fmt.Errorf("payments: unexpected body %q: %v", r.body, err)
		}
		return res, nil
	case http.StatusBadRequest:
		var e struct{ Error, Field string }
		_ = json.Unmarshal(r.body, &e)
		if e.Field != "card" && !strings.HasPrefix(e.Field, "card.") {
			return paymentResult{}, unexpected("payments", r) // our part of the request was bad, not the client's card
		}
		return paymentResult{}, &api.Error{Status: http.StatusBadRequest, Field: e.Field, Message: e.Error}
	case http.StatusUnprocessableEntity:
		return paymentResult{}, errPaymentKeyConflict
	case http.StatusConflict:
		// An identical request is still charging (a retry overtook it).
		return paymentResult{}, fmt.Errorf("%w: payments: %s", errUnavailable, r.errorMessage())
	}
	return paymentResult{}, unexpected("payments", r)
}
