package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// WriteJSON writes v as the JSON response body with the given status.
func WriteJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	body, err := marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

func writeJSONBody(ctx *fasthttp.RequestCtx, status int, v any) {
	body, _ := marshal(v) // only called with errorBody, which always encodes
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteCacheable writes v as a 200 JSON response that clients and caches may keep for maxAge:
// it carries a strong ETag over the body and Cache-Control: public, max-age=N. When the
// request's If-None-Match names that ETag (or is "*") the response is a 304 without a body.
// Headers the handler set before (pagination, say) stay on both.
func WriteCacheable(ctx *fasthttp.RequestCtx, v any, maxAge time.Duration) error {
	body, err := marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	ctx.Response.Header.Set(fasthttp.HeaderETag, etag)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age="+strconv.Itoa(int(maxAge/time.Second)))
	if etagMatches(string(ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch)), etag) {
		ctx.SetStatusCode(http.StatusNotModified)
		ctx.ResetBody()
		return nil
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

// etagMatches implements the weak comparison If-None-Match asks for (RFC 9110 13.1.2).
func etagMatches(header, etag string) bool {
	header = strings.TrimSpace(header)
	if header == "" {
		return false
	}
	if header == "*" {
		return true
	}
	for _, candidate := range strings.Split(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == etag {
			return true
		}
	}
	return false
}

// DecodeJSON reads the request body, a single JSON value, into v. Every failure is a 400 that
// names what is wrong: "body" for a missing or malformed body, the JSON field name for a value
// of the wrong type. Fields the target does not know are ignored. The size limit is the
// server's (an oversized body never reaches a handler).
func DecodeJSON(ctx *fasthttp.RequestCtx, v any) error {
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		return BadRequest("body", "a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest("body", "unexpected data after the JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return BadRequest("body", "must be a JSON object")
		}
		return &Error{Status: http.StatusBadRequest, Field: typeErr.Field,
			Message: typeErr.Field + ": must be " + describe(typeErr.Type), Err: err}
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Status: http.StatusBadRequest, Field: "body", Message: "body: malformed JSON", Err: err}
	}
	return &Error{Status: http.StatusBadRequest, Field: "body", Message: "body: cannot be decoded", Err: err}
}

// JSONDescriber is implemented by types that decode from JSON in a way their Go kind does not
// tell (money.Cents is an int64 but reads "12.50"); DecodeJSON uses it in 400 messages.
type JSONDescriber interface {
	JSONDescription() string
}

func describe(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	if d, ok := reflect.New(t).Elem().Interface().(JSONDescriber); ok {
		return d.JSONDescription()
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}

// PathInt64 returns the router parameter name as a positive integer, or a 400 naming it.
func PathInt64(ctx *fasthttp.RequestCtx, name string) (int64, error) {
	raw, _ := ctx.UserValue(name).(string)
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n <= 0 {
		return 0, BadRequest(name, "must be a positive integer")
	}
	return n, nil
}

// QueryInt returns the query parameter name as an integer in [min, max], def when it is absent,
// or a 400 naming it.
func QueryInt(ctx *fasthttp.RequestCtx, name string, def, min, max int) (int, error) {
	args := ctx.QueryArgs()
	if !args.Has(name) {
		return def, nil
	}
	n, err := strconv.Atoi(string(args.Peek(name)))
	if err != nil || n < min || n > max {
		return 0, BadRequest(name, fmt.Sprintf("must be an integer from %d to %d", min, max))
	}
	return n, nil
}
