package proxy

import (
	"errors"
	"strconv"
	"strings"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
)

// Errors the gateway answers itself. Policies (rate limits, auth) add their own by implementing
// StatusError; this file is the one place where errors become HTTP statuses.
var (
	ErrNoRoute           = errors.New("no route matches this request")
	ErrMethodNotAllowed  = errors.New("method not allowed on this route")
	ErrMethodRefused     = errors.New("method not allowed")
	ErrNotImplemented    = errors.New("method not implemented")
	ErrNoTarget          = errors.New("no upstream target available")
	ErrBodyTooLarge      = errors.New("request body too large")
	ErrHeaderTooLarge    = errors.New("request header too large")
	ErrURITooLong        = errors.New("request line too long")
	ErrBadRequest        = errors.New("bad request")
	ErrRequestBodyBroken = errors.New("request body could not be read")
	ErrRequestTimeout    = errors.New("request timed out")
	// ErrRateLimited: the route's rate limit refused the request (429, with Retry-After).
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrLimitStoreUnavailable: a shared rate limit could not be checked and the route says
	// on_store_error: deny (503).
	ErrLimitStoreUnavailable = errors.New("rate limit store unavailable")
)

// StatusError is implemented by errors that carry their own status, such as a policy's 401 or
// 429. Status also returns whether the connection must close after the answer.
type StatusError interface {
	error
	Status() (code int, closeConn bool)
}

// Status maps an error to the HTTP status the client gets, and reports whether the connection
// must be closed afterwards: after a malformed request nothing more on that connection can be
// trusted to be parsed correctly.
func Status(err error) (code int, closeConn bool) {
	// Policies return their refusals unwrapped; asking directly first keeps a refused request
	// (a 401, a 429) free of the allocation errors.As makes for its target.
	if se, ok := err.(StatusError); ok {
		return se.Status()
	}
	var se StatusError
	if errors.As(err, &se) {
		return se.Status()
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch ue.Kind {
		case upstream.KindClient:
			return Status(ue.Err)
		case upstream.KindTimeout, upstream.KindConnectTimeout:
			return fasthttp.StatusGatewayTimeout, false
		case upstream.KindNoFreeConns:
			return fasthttp.StatusServiceUnavailable, false
		}
		return fasthttp.StatusBadGateway, false
	}
	switch {
	case errors.Is(err, ErrNoRoute):
		return fasthttp.StatusNotFound, false
	case errors.Is(err, ErrMethodNotAllowed), errors.Is(err, ErrMethodRefused):
		return fasthttp.StatusMethodNotAllowed, false
	case errors.Is(err, ErrNotImplemented):
		return fasthttp.StatusNotImplemented, true
	case errors.Is(err, ErrNoTarget), errors.Is(err, ErrLimitStoreUnavailable):
		return fasthttp.StatusServiceUnavailable, false
	case errors.Is(err, ErrRateLimited):
		return fasthttp.StatusTooManyRequests, false
	case errors.Is(err, ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, true
	case errors.Is(err, ErrHeaderTooLarge):
		return fasthttp.StatusRequestHeaderFieldsTooLarge, true
	case errors.Is(err, ErrURITooLong):
		return fasthttp.StatusRequestURITooLong, true
	case errors.Is(err, protocol.ErrVersion):
		return fasthttp.StatusHTTPVersionNotSupported, true
	case errors.Is(err, protocol.ErrExpectation):
		// The client may be holding its body back for a 100 Continue that never comes, or
		// sending it anyway: nothing after this answer can be framed reliably.
		return fasthttp.StatusExpectationFailed, true
	case errors.Is(err, ErrRequestTimeout):
		return fasthttp.StatusRequestTimeout, true
	case errors.Is(err, ErrRequestBodyBroken), errors.Is(err, ErrBadRequest), isProtocolError(err):
		return fasthttp.StatusBadRequest, true
	}
	return fasthttp.StatusBadGateway, false
}

func isProtocolError(err error) bool {
	for _, e := range []error{
		protocol.ErrPathNotOrigin, protocol.ErrPathBadEscape, protocol.ErrPathBadChar, protocol.ErrPathEncodedSlash,
		protocol.ErrPathEncodedNUL, protocol.ErrObsFold, protocol.ErrHeaderName, protocol.ErrHeaderUnderscore,
		protocol.ErrHeaderSyntax, protocol.ErrFramingConflict, protocol.ErrTransferEncoding, protocol.ErrHostUserinfo,
		protocol.ErrTooManyHopFields, protocol.ErrBareLF, protocol.ErrAuthorityMismatch,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// publicErrors are the gateway's own refusals: fixed texts that name a class of problem and
// nothing of the gateway's insides, shown to the client when the error is one of them exactly.
var publicErrors = [...]error{
	ErrNoRoute, ErrMethodNotAllowed, ErrMethodRefused, ErrNotImplemented, ErrNoTarget,
	ErrBodyTooLarge, ErrHeaderTooLarge, ErrURITooLong, ErrRequestBodyBroken, ErrRequestTimeout,
	ErrRateLimited, ErrLimitStoreUnavailable, protocol.ErrVersion, protocol.ErrExpectation,
}

// statusMessages is the fixed text per status for everything else: the reason phrase in lower
// case, with the gateway's wording where it has one. Built once; looking it up allocates nothing.
var statusMessages = func() map[int]string {
	m := make(map[int]string)
	for code := 400; code < 600; code++ {
		if text := fasthttp.StatusMessage(code); text != "Unknown Status Code" {
			m[code] = strings.ToLower(text)
		}
	}
	for code, text := range map[int]string{
		fasthttp.StatusRequestTimeout:              ErrRequestTimeout.Error(),
		fasthttp.StatusRequestEntityTooLarge:       ErrBodyTooLarge.Error(),
		fasthttp.StatusRequestURITooLong:           ErrURITooLong.Error(),
		fasthttp.StatusRequestHeaderFieldsTooLarge: ErrHeaderTooLarge.Error(),
		fasthttp.StatusBadGateway:                  "upstream error",
		fasthttp.StatusServiceUnavailable:          "upstream busy",
		fasthttp.StatusGatewayTimeout:              "upstream timed out",
	} {
		m[code] = text
	}
	return m
}()

// message is what the client reads about err: a policy's own refusal text (a StatusError
// returned as is: those are fixed strings written for clients), one of publicErrors, or the
// fixed text of the status. Never the error's details: they name upstream and socket addresses,
// fasthttp's buffer sizes, what the parser choked on. Those go to the access log (x.Err) and,
// for the gateway's own faults, the error log.
func message(code int, err error) string {
	if se, ok := err.(StatusError); ok {
		return se.Error()
	}
	for _, e := range publicErrors {
		if err == e {
			return e.Error()
		}
	}
	if m, ok := statusMessages[code]; ok {
		return m
	}
	return "error"
}

// WriteError answers the exchange with err's status and a JSON body
// {"error": "...", "request_id": "..."}, replacing whatever response was being built. A gRPC
// request (content-type application/grpc) gets the gRPC form of the same answer instead (see
// GRPCCode).
func WriteError(x *Exchange, err error) {
	x.Err = err
	code, closeConn := Status(err)
	if isGRPC(&x.Ctx.Request.Header) {
		x.GRPCStatus, x.GRPCAnswered = GRPCCode(code, err), true
		writeGRPCError(&x.Ctx.Response, x.GRPCStatus, message(code, err), closeConn)
		return
	}
	writeErrorResponse(x.Ctx, code, message(code, err), x.RequestID, closeConn)
}

// gRPC status codes the gateway answers with (google.golang.org/grpc/codes).
const (
	grpcCancelled          = 1
	grpcUnknown            = 2
	grpcDeadlineExceeded   = 4
	grpcPermissionDenied   = 7
	grpcResourceExhausted  = 8
	grpcUnimplemented      = 12
	grpcInternal           = 13
	grpcUnavailable        = 14
	grpcUnauthenticated    = 16
	grpcInvalidArgument    = 3
	grpcFailedPrecondition = 9
)

// GRPCCode is the gRPC status of an error whose HTTP status is code: gRPC's own mapping of HTTP
// statuses (doc/http-grpc-status-mapping.md in grpc) where the gateway has nothing better, and
// the meaning where it has: a rate limit or a body over the limit is RESOURCE_EXHAUSTED, not
// UNAVAILABLE; a timeout is DEADLINE_EXCEEDED; a client that went away is CANCELLED.
func GRPCCode(code int, err error) int {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Kind == upstream.KindClient && !errors.Is(ue.Err, ErrBodyTooLarge) && !errors.Is(ue.Err, ErrRequestTimeout) {
		return grpcCancelled
	}
	switch code {
	case fasthttp.StatusBadRequest:
		return grpcInternal
	case fasthttp.StatusUnauthorized:
		return grpcUnauthenticated
	case fasthttp.StatusForbidden:
		return grpcPermissionDenied
	case fasthttp.StatusNotFound, fasthttp.StatusMethodNotAllowed, fasthttp.StatusNotImplemented:
		return grpcUnimplemented
	case fasthttp.StatusRequestTimeout, fasthttp.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case fasthttp.StatusTooManyRequests, fasthttp.StatusRequestEntityTooLarge, fasthttp.StatusRequestHeaderFieldsTooLarge:
		return grpcResourceExhausted
	case fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable:
		return grpcUnavailable
	case fasthttp.StatusExpectationFailed, fasthttp.StatusPreconditionFailed:
		return grpcFailedPrecondition
	case fasthttp.StatusRequestURITooLong, fasthttp.StatusHTTPVersionNotSupported:
		return grpcInvalidArgument
	}
	return grpcUnknown
}

// grpcBodyError ends a gRPC response whose upstream stream failed after it began: the client
// gets the failure as the call's status in the trailers (a dead target is UNAVAILABLE, the
// deadline DEADLINE_EXCEEDED) instead of a reset stream it would read as INTERNAL.
func grpcBodyError(err error, h *fasthttp.ResponseHeader) bool {
	code, _ := Status(err)
	setGRPCStatus(h, GRPCCode(code, err), message(code, err))
	return true
}

var (
	hGRPCStatus  = []byte("Grpc-Status")
	hGRPCMessage = []byte("Grpc-Message")
	grpcCT       = []byte("application/grpc")
)

// isGRPC reports whether a request is a gRPC call: content-type application/grpc, alone or
// with a +format suffix (application/grpc+proto) or parameters.
func isGRPC(h *fasthttp.RequestHeader) bool {
	ct := h.ContentType()
	if len(ct) < len(grpcCT) || !equalFoldBytes(ct[:len(grpcCT)], grpcCT) {
		return false
	}
	return len(ct) == len(grpcCT) || ct[len(grpcCT)] == '+' || ct[len(grpcCT)] == ';'
}

// writeGRPCError answers a gRPC call as gRPC clients expect an error: HTTP 200, content-type
// application/grpc and no message, the status in grpc-status and grpc-message. With no body
// these fields travel in the response head, a trailers-only response (gRPC over HTTP/2).
func writeGRPCError(resp *fasthttp.Response, status int, msg string, closeConn bool) {
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusOK)
	resp.Header.SetContentTypeBytes(grpcCT)
	setGRPCStatus(&resp.Header, status, msg)
	if closeConn {
		resp.SetConnectionClose()
	}
}

func setGRPCStatus(h *fasthttp.ResponseHeader, status int, msg string) {
	var b [128]byte
	h.SetBytesKV(hGRPCStatus, strconv.AppendInt(b[:0], int64(status), 10))
	h.SetBytesKV(hGRPCMessage, appendGRPCMessage(b[:0], msg))
}

// appendGRPCMessage percent-encodes msg as grpc-message requires: printable ASCII but '%'
// stays, everything else is %XX.
func appendGRPCMessage(dst []byte, msg string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&0xF])
	}
	return dst
}

func writeErrorResponse(ctx *fasthttp.RequestCtx, code int, msg string, requestID []byte, closeConn bool) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(code)
	resp.Header.SetContentType("application/json")
	// Build the body in the response's own buffer: AppendBody copies, and copying into an
	// empty buffer that already has capacity allocates nothing.
	var b [256]byte
	body := append(b[:0], `{"error":`...)
	body = appendJSONString(body, msg)
	body = append(body, `,"request_id":`...)
	body = appendJSONString(body, string(requestID))
	body = append(body, "}\n"...)
	resp.AppendBody(body)
	if closeConn {
		resp.SetConnectionClose()
	}
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// DirectResponse answers a route's requests itself (config: respond).
type DirectResponse struct {
	Status      int
	Body        []byte
	ContentType []byte
}

var _ Handler = (*DirectResponse)(nil)

// Serve implements Handler.
func (d *DirectResponse) Serve(x *Exchange) {
	if len(d.Body) == 0 && d.Status >= 400 {
		writeErrorResponse(x.Ctx, d.Status, fasthttp.StatusMessage(d.Status), x.RequestID, false)
		return
	}
	resp := &x.Ctx.Response
	resp.SetStatusCode(d.Status)
	if len(d.ContentType) > 0 {
		resp.Header.SetContentTypeBytes(d.ContentType)
	}
	resp.SetBodyRaw(d.Body)
}
