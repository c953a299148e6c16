package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// Limits of the products API.
const (
	defaultLimit   = 20
	maxLimit       = 100
	maxPage        = 1_000_000
	listMaxAge     = 30 * time.Second
	itemMaxAge     = 60 * time.Second
	maxNameLen     = 200
	maxDescLen     = 2000
	maxCategoryLen = 100
	maxSearchLen   = 100
	maxInventory   = 1_000_000_000
	maxQuantity    = 1_000_000
	maxOrderIDLen  = 64
	maxPrice       = money.Cents(99_999_999_99) // 99,999,999.99
)

// service holds the products endpoints' dependencies. Immutable; safe for concurrent use.
type service struct {
	store    *Store
	verifier *auth.Verifier
}

func (s *service) routes(srv *server.Server) {
	srv.Handle(http.MethodGet, "/products", s.list)
	srv.Handle(http.MethodGet, "/products/{id}", s.get)
	srv.Handle(http.MethodPost, "/products", s.verifier.Require(s.create, auth.RoleAdmin))
	srv.Handle(http.MethodPut, "/products/{id}", s.verifier.Require(s.update, auth.RoleAdmin))
	srv.Handle(http.MethodPut, "/products/{id}/inventory", s.verifier.Require(s.setInventory, auth.RoleAdmin))
	// Service-to-service (orders), but any valid token: orders forwards the end user's token.
	srv.Handle(http.MethodPost, "/products/{id}/reserve", s.verifier.Require(s.reserve))
	srv.Handle(http.MethodPost, "/products/{id}/release", s.verifier.Require(s.release))
}

func (s *service) list(ctx *fasthttp.RequestCtx) error {
	limit, err := api.QueryInt(ctx, "limit", defaultLimit, 1, maxLimit)
	if err != nil {
		return err
	}
	page, err := api.QueryInt(ctx, "page", 1, 1, maxPage)
	if err != nil {
		return err
	}
	q := ctx.QueryArgs()
	category := strings.TrimSpace(string(q.Peek("category")))
	search := strings.TrimSpace(string(q.Peek("search")))
	if !utf8.ValidString(category) || len(category) > maxCategoryLen {
		return api.BadRequest("category", fmt.Sprintf("must be valid UTF-8 of at most %d characters", maxCategoryLen))
	}
	if !utf8.ValidString(search) || utf8.RuneCountInString(search) > maxSearchLen {
		return api.BadRequest("search", fmt.Sprintf("must be valid UTF-8 of at most %d characters", maxSearchLen))
	}
	products, total, err := s.store.List(ctx, ListFilter{Category: category, Search: search, Limit: limit, Offset: (page - 1) * limit})
	if err != nil {
		return err
	}
	ctx.Response.Header.Set("X-Total-Count", strconv.Itoa(total))
	ctx.Response.Header.Set("Link", paginationLinks(api.URL(ctx, ""), category, search, page, limit, total))
	return api.WriteCacheable(ctx, products, listMaxAge)
}

// paginationLinks renders RFC 8288 Link values: first and last always, prev and next when they
// exist. base is where the service is reached (api.URL of ""); the URLs keep the filters.
func paginationLinks(base, category, search string, page, limit, total int) string {
	last := max(1, (total+limit-1)/limit)
	link := func(p int, rel string) string {
		v := url.Values{}
		if category != "" {
			v.Set("category", category)
		}
		if search != "" {
			v.Set("search", search)
		}
		v.Set("page", strconv.Itoa(p))
		v.Set("limit", strconv.Itoa(limit))
		return fmt.Sprintf(`<%s/products?%s>; rel="%s"`, base, v.Encode(), rel)
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

func (s *service) get(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	p, err := s.store.Get(ctx, id)
	if err != nil {
		return storeError(err)
	}
	return api.WriteCacheable(ctx, p, itemMaxAge)
}

// productRequest is the body of POST and PUT /products. Pointers tell a missing field from zero.
type productRequest struct {
	Name        *string      `json:"name"`
	Description *string      `json:"description"`
	Price       *money.Cents `json:"price"`
	Category    *string      `json:"category"`
	Inventory   *int64       `json:"inventory"`
}

func (r productRequest) validate() (ProductInput, error) {
	var in ProductInput
	var err error
	if in.Name, err = requiredText("name", r.Name, maxNameLen); err != nil {
		return in, err
	}
	if r.Description != nil {
		in.Description = strings.TrimSpace(*r.Description)
		if !utf8.ValidString(in.Description) || utf8.RuneCountInString(in.Description) > maxDescLen {
			return in, api.BadRequest("description", fmt.Sprintf("must be at most %d characters", maxDescLen))
		}
	}
	switch {
	case r.Price == nil:
		return in, api.BadRequest("price", "is required")
	case *r.Price < 0 || *r.Price > maxPrice:
		return in, api.BadRequest("price", "must be from 0 to "+maxPrice.String())
	}
	in.Price = *r.Price
	if in.Category, err = requiredText("category", r.Category, maxCategoryLen); err != nil {
		return in, err
	}
	if r.Inventory != nil && (*r.Inventory < 0 || *r.Inventory > maxInventory) {
		return in, api.BadRequest("inventory", fmt.Sprintf("must be an integer from 0 to %d", maxInventory))
	}
	in.Inventory = r.Inventory
	return in, nil
}

func requiredText(field string, v *string, maxLen int) (string, error) {
	if v == nil || strings.TrimSpace(*v) == "" {
		return "", api.BadRequest(field, "is required")
	}
	t := strings.TrimSpace(*v)
	if !utf8.ValidString(t) || utf8.RuneCountInString(t) > maxLen {
		return "", api.BadRequest(field, fmt.Sprintf("must be at most %d characters", maxLen))
	}
	if strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", api.BadRequest(field, "must not contain control characters")
	}
	return t, nil
}

func (s *service) create(ctx *fasthttp.RequestCtx) error {
	var req productRequest
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	in, err := req.validate()
	if err != nil {
		return err
	}
	p, err := s.store.Create(ctx, in)
	if err != nil {
		return err
	}
	ctx.Response.Header.Set(fasthttp.HeaderLocation, api.URL(ctx, "/products/"+strconv.FormatInt(p.ID, 10)))
	return api.WriteJSON(ctx, http.StatusCreated, p)
}

func (s *service) update(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	var req productRequest
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	in, err := req.validate()
	if err != nil {
		return err
	}
	p, err := s.store.Update(ctx, id, in)
	if err != nil {
		return storeError(err)
	}
	return api.WriteJSON(ctx, http.StatusOK, p)
}

func (s *service) setInventory(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	var req struct {
		Inventory *int64 `json:"inventory"`
	}
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	if req.Inventory == nil {
		return api.BadRequest("inventory", "is required")
	}
	if *req.Inventory < 0 || *req.Inventory > maxInventory {
		return api.BadRequest("inventory", fmt.Sprintf("must be an integer from 0 to %d", maxInventory))
	}
	p, err := s.store.SetInventory(ctx, id, *req.Inventory)
	if err != nil {
		return storeError(err)
	}
	return api.WriteJSON(ctx, http.StatusOK, p)
}

type reservationRequest struct {
	Quantity *int64  `json:"quantity"`
	OrderID  *string `json:"order_id"`
}

func (r reservationRequest) orderID() (string, error) {
	if r.OrderID == nil || *r.OrderID == "" {
		return "", api.BadRequest("order_id", "is required")
	}
	id := *r.OrderID
	if len(id) > maxOrderIDLen || strings.ContainsFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:", c))
	}) {
		return "", api.BadRequest("order_id", fmt.Sprintf("must be 1 to %d of A-Z a-z 0-9 - _ . :", maxOrderIDLen))
	}
	return id, nil
}

func checkQuantity(q *int64) error {
	if *q < 1 || *q > maxQuantity {
		return api.BadRequest("quantity", fmt.Sprintf("must be an integer from 1 to %d", maxQuantity))
	}
	return nil
}

func (s *service) reserve(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	var req reservationRequest
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	if req.Quantity == nil {
		return api.BadRequest("quantity", "is required")
	}
	if err := checkQuantity(req.Quantity); err != nil {
		return err
	}
	orderID, err := req.orderID()
	if err != nil {
		return err
	}
	res, err := s.store.Reserve(ctx, id, orderID, auth.ClaimsFrom(ctx).Subject, *req.Quantity)
	if err != nil {
		return storeError(err)
	}
	status := http.StatusCreated
	if res.Replayed {
		status = http.StatusOK
	}
	return api.WriteJSON(ctx, status, res)
}

func (s *service) release(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	var req reservationRequest
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	if req.Quantity != nil {
		if err := checkQuantity(req.Quantity); err != nil {
			return err
		}
	}
	orderID, err := req.orderID()
	if err != nil {
		return err
	}
	claims := auth.ClaimsFrom(ctx)
	res, err := s.store.Release(ctx, id, orderID, claims.Subject, claims.IsAdmin(), req.Quantity)
	if err != nil {
		return storeError(err)
	}
	return api.WriteJSON(ctx, http.StatusOK, res)
}

// storeError maps the store's errors to API errors; the server maps the rest to 500.
func storeError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return api.NotFound("product not found")
	case errors.Is(err, ErrInsufficientStock):
		return api.Conflict("insufficient stock")
	case errors.Is(err, ErrNoReservation):
		return api.NotFound("no reservation for this order and product")
	case errors.Is(err, ErrReservationConflict):
		return &api.Error{Status: http.StatusConflict, Message: strings.TrimPrefix(err.Error(), ErrReservationConflict.Error()+": "), Err: err}
	}
	return err
}
