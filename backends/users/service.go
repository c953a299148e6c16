package main

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// service holds the users endpoints' dependencies. Immutable after newService; safe for
// concurrent use.
type service struct {
	store    *Store
	issuer   *auth.Issuer
	verifier *auth.Verifier
	cost     int
	// dummyHash is compared against on a login for an unknown email, so the answer takes as
	// long as for a known email with a wrong password.
	dummyHash []byte
	// compare is bcrypt.CompareHashAndPassword; tests count its calls.
	compare func(hash, password []byte) error
}

func newService(store *Store, issuer *auth.Issuer, verifier *auth.Verifier, cost int) (*service, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not-a-real-password-for-timing"), cost)
	if err != nil {
		return nil, err
	}
	return &service{store: store, issuer: issuer, verifier: verifier, cost: cost, dummyHash: dummy,
		compare: bcrypt.CompareHashAndPassword}, nil
}

func (s *service) routes(srv *server.Server) {
	srv.Handle(http.MethodPost, "/auth/register", s.register)
	srv.Handle(http.MethodPost, "/auth/login", s.login)
	srv.Handle(http.MethodGet, "/users/me", s.verifier.Require(s.me))
	// /auth/verify is for a gateway's forward_auth, which asks with the original request's
	// method: every method a route may carry gets the same answer.
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		srv.Handle(m, "/auth/verify", s.verifier.Require(s.verify))
	}
	srv.Handle(http.MethodGet, "/users/{id}", s.verifier.Require(s.userByID))
	srv.Handle(http.MethodGet, "/.well-known/jwks.json", s.jwks)
}

type authResponse struct {
	User  User   `json:"user"`
	Token string `json:"token"`
}

func (s *service) register(ctx *fasthttp.RequestCtx) error {
	var req struct {
		Email     string `json:"email"`
		Password  string `json:"password"`
		FirstName string `json:"firstName"`
		LastName  string `json:"lastName"`
	}
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	nu, err := s.validateNewUser(req.Email, req.Password, req.FirstName, req.LastName)
	if err != nil {
		return err
	}
	nu.Role = auth.RoleCustomer
	user, err := s.store.Create(ctx, nu)
	if errors.Is(err, ErrEmailTaken) {
		return &api.Error{Status: http.StatusConflict, Message: "email already registered", Field: "email"}
	}
	if err != nil {
		return err
	}
	token, _, err := s.issuer.Issue(user.ID, user.Email, user.Role)
	if err != nil {
		return err
	}
	ctx.Response.Header.Set(fasthttp.HeaderLocation, api.URL(ctx, "/users/"+strconv.FormatInt(user.ID, 10)))
	return api.WriteJSON(ctx, http.StatusCreated, authResponse{User: user, Token: token})
}

// validateNewUser checks and normalizes registration input and hashes the password.
func (s *service) validateNewUser(email, password, first, last string) (NewUser, error) {
	email, err := normalizeEmail(email)
	if err != nil {
		return NewUser{}, err
	}
	if err := checkPassword(password); err != nil {
		return NewUser{}, err
	}
	if first, err = checkName("firstName", first); err != nil {
		return NewUser{}, err
	}
	if last, err = checkName("lastName", last); err != nil {
		return NewUser{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return NewUser{}, err
	}
	return NewUser{Email: email, PasswordHash: hash, FirstName: first, LastName: last}, nil
}

func (s *service) login(ctx *fasthttp.RequestCtx) error {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := api.DecodeJSON(ctx, &req); err != nil {
		return err
	}
	if req.Email == "" {
		return api.BadRequest("email", "is required")
	}
	if req.Password == "" {
		return api.BadRequest("password", "is required")
	}
	invalid := api.Unauthorized("Invalid credentials")
	if len(req.Password) > maxPasswordLen {
		// No stored password is this long; still pay for one comparison.
		_ = s.compare(s.dummyHash, []byte(req.Password[:maxPasswordLen]))
		return invalid
	}
	user, hash, err := s.store.ByEmail(ctx, normalizeLoginEmail(req.Email))
	if errors.Is(err, ErrNotFound) {
		// Same work as a wrong password, so timing does not tell which emails exist.
		_ = s.compare(s.dummyHash, []byte(req.Password))
		return invalid
	}
	if err != nil {
		return err
	}
	if s.compare(hash, []byte(req.Password)) != nil {
		return invalid
	}
	token, _, err := s.issuer.Issue(user.ID, user.Email, user.Role)
	if err != nil {
		return err
	}
	return api.WriteJSON(ctx, http.StatusOK, authResponse{User: user, Token: token})
}

// normalizeLoginEmail lower-cases without validating: a malformed email simply matches no user,
// and answers like any other wrong credential.
func normalizeLoginEmail(email string) string {
	if e, err := normalizeEmail(email); err == nil {
		return e
	}
	return email
}

func (s *service) me(ctx *fasthttp.RequestCtx) error {
	id, err := auth.ClaimsFrom(ctx).UserID()
	if err != nil {
		return api.Unauthorized("invalid token subject")
	}
	return s.writeUser(ctx, id)
}

// verify answers 204 for a valid bearer token, with the identity it carries in X-User-Id,
// X-User-Email and X-User-Role; Require has already answered 401 for anything else. It reads
// no database: a gateway asks on every request it is configured to check.
func (s *service) verify(ctx *fasthttp.RequestCtx) error {
	c := auth.ClaimsFrom(ctx)
	ctx.Response.Header.Set(auth.HeaderUserID, c.Subject)
	ctx.Response.Header.Set(auth.HeaderUserEmail, c.Email)
	ctx.Response.Header.Set(auth.HeaderUserRole, c.Role)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "private, no-store")
	ctx.SetStatusCode(http.StatusNoContent)
	return nil
}

// userByID answers for the user themself or an admin. Anyone else gets the same 404 as for an
// id that does not exist, so the endpoint does not reveal which ids exist.
func (s *service) userByID(ctx *fasthttp.RequestCtx) error {
	id, err := api.PathInt64(ctx, "id")
	if err != nil {
		return err
	}
	claims := auth.ClaimsFrom(ctx)
	if self, _ := claims.UserID(); self != id && !claims.IsAdmin() {
		return api.NotFound("user not found")
	}
	return s.writeUser(ctx, id)
}

func (s *service) writeUser(ctx *fasthttp.RequestCtx, id int64) error {
	user, err := s.store.ByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return api.NotFound("user not found")
	}
	if err != nil {
		return err
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "private, no-store")
	return api.WriteJSON(ctx, http.StatusOK, user)
}

func (s *service) jwks(ctx *fasthttp.RequestCtx) error {
	return api.WriteCacheable(ctx, s.issuer.JWKS(), 5*time.Minute)
}
