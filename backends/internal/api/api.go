// Package api is the HTTP vocabulary the backend services share on top of fasthttp: handlers that
// return errors, the one mapping from errors to JSON error responses, request ids, request body
// decoding that names the offending field, and cacheable JSON responses with ETags.
//
// A service registers Handlers with backends/internal/server, which calls WriteError for any
// error a handler returns. Handlers never write error responses themselves.
package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/valyala/fasthttp"
)

// Handler serves one request. A non-nil error is turned into a JSON error response by
// WriteError; a handler that returns an error must not have written a response body.
type Handler func(ctx *fasthttp.RequestCtx) error

// Error is an error with an HTTP status and a message that is safe to show to a client. Field
// names the request field at fault for a 400. Err is the cause: logged, never sent.
type Error struct {
	Status  int
	Message string
	Field   string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given status and formatted message.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// BadRequest returns a 400 naming field: the message reads "<field>: <problem>".
func BadRequest(field, problem string) *Error {
	return &Error{Status: http.StatusBadRequest, Message: field + ": " + problem, Field: field}
}

// Unauthorized returns a 401; the response carries WWW-Authenticate: Bearer.
func Unauthorized(message string) *Error {
	return &Error{Status: http.StatusUnauthorized, Message: message}
}

// Forbidden returns a 403.
func Forbidden(message string) *Error { return &Error{Status: http.StatusForbidden, Message: message} }

// NotFound returns a 404.
func NotFound(message string) *Error { return &Error{Status: http.StatusNotFound, Message: message} }

// Conflict returns a 409.
func Conflict(message string) *Error { return &Error{Status: http.StatusConflict, Message: message} }

// errorBody is the shape of every error response.
type errorBody struct {
	Error     string `json:"error"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id"`
}

// WriteError writes err as a JSON error response and returns the status written. An *Error (or
// an error wrapping one) keeps its status and message; anything else is a 500 with a generic
// message, so internal details never reach a client. This is the only place errors become
// statuses.
func WriteError(ctx *fasthttp.RequestCtx, err error) int {
	status, body := http.StatusInternalServerError, errorBody{Error: "internal server error"}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		status, body.Error, body.Field = apiErr.Status, apiErr.Message, apiErr.Field
	}
	body.RequestID = RequestID(ctx)
	if status == http.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer`)
	}
	ctx.Response.Header.Del(fasthttp.HeaderETag)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	writeJSONBody(ctx, status, body)
	return status
}

// HeaderRequestID carries the request id from the gateway and back to the client.
const HeaderRequestID = "X-Request-ID"

type ctxKey int

const (
	requestIDKey ctxKey = iota
	logUserKey
)

// EnsureRequestID gives the request its id: the X-Request-ID the gateway sent when it is sane
// (1 to 128 printable ASCII characters without spaces or quotes), else a fresh random one. The
// id is echoed in the response header and returned by RequestID. The server calls it first thing.
func EnsureRequestID(ctx *fasthttp.RequestCtx) string {
	id := string(ctx.Request.Header.Peek(HeaderRequestID))
	if !validRequestID(id) {
		id = NewRequestID()
	}
	ctx.SetUserValue(requestIDKey, id)
	ctx.Response.Header.Set(HeaderRequestID, id)
	return id
}

// RequestID returns the id EnsureRequestID gave the request, or "" before that.
func RequestID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue(requestIDKey).(string)
	return id
}

// NewRequestID returns 16 random bytes in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux (Go 1.24+ panics instead)
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// SetLogUser records the authenticated user of the request for the access log.
func SetLogUser(ctx *fasthttp.RequestCtx, userID string) { ctx.SetUserValue(logUserKey, userID) }

// LogUser returns what SetLogUser recorded, or "".
func LogUser(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue(logUserKey).(string)
	return id
}
