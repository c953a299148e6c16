package proxy

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/upstream"
)

var (
	hGRPCTimeout = []byte("Grpc-Timeout")
	tokTrailers  = []byte("trailers")
)

// serveH2 forwards a request to an upstream reached over HTTP/2 (protocol h2c or h2): the same
// header hygiene and rewriting as HTTP/1.1, then a stream on the target's shared connection.
// The request body streams to the upstream while the response streams back, so every gRPC call
// kind works; the response keeps its trailers. A gRPC call's deadline is its grpc-timeout,
// capped by the route's timeout. Nothing here is on the HTTP/1.1 path.
func (f *Forwarder) serveH2(x *Exchange, up *upstream.Upstream, raw []byte) {
	r := f.Route
	ctx := x.Ctx
	req := &ctx.Request
	grpc := isGRPC(&req.Header)
	te := x.Facts.Has(protocol.HasTE) && bytes.Contains(req.Header.PeekBytes(hTE), tokTrailers)

	h := &upstream.H2RoundTrip{TE: te, GRPC: grpc}
	if grpc {
		h.BodyError = grpcBodyError
	}
	if stream := req.BodyStream(); stream != nil {
		if x.Wire == protocol.WireHTTP2 {
			// Its own allocation, not the exchange's reusable body: the transport reads it after the
			// handler returned and the exchange went back to its pool.
			b := &cappedBody{r: stream, left: x.Snapshot.MaxBodyBytes}
			h.Body, h.ClientBody = b, b
			if tc, ok := ctx.Conn().(requestTrailers); ok {
				h.Trailer = tc.RequestTrailer()
			}
		} else {
			// An HTTP/2 stream's body is its own and may be read while the response streams;
			// an HTTP/1.1 connection reads its next request from where this body ends, so
			// that body is read whole now, not by the transport after this handler returned.
			body, err := io.ReadAll(io.LimitReader(stream, x.Snapshot.MaxBodyBytes+1))
			switch {
			case err != nil:
				WriteError(x, clientBodyError(err))
				return
			case int64(len(body)) > x.Snapshot.MaxBodyBytes:
				WriteError(x, ErrBodyTooLarge)
				return
			}
			req.SetBodyRaw(body)
		}
	}
	stripRequestHopByHop(&req.Header, &x.Facts, raw)
	setForwardedHeaders(x, raw)
	if len(r.StripPrefix) > 0 {
		setForwardedPrefix(x, r.StripPrefix)
	}
	if !r.RequestHeaders.Empty() {
		applyRequestOps(&req.Header, &r.RequestHeaders)
	}
	req.SetRequestURIBytes(upstreamTarget(x, r))

	now := time.Now()
	x.up.Now = now.UnixNano()
	x.up.Timeout = r.Timeout
	x.up.Deadline = now.Add(r.Timeout)
	x.up.Head = x.Method == protocol.MethodHead
	if grpc {
		if d, ok := parseGRPCTimeout(req.Header.PeekBytes(hGRPCTimeout)); ok && d < r.Timeout {
			x.up.Timeout = d
			x.up.Deadline = now.Add(d)
		} else {
			// The upstream learns the deadline the gateway enforces.
			var b [24]byte
			req.Header.SetBytesKV(hGRPCTimeout, appendGRPCTimeout(b[:0], r.Timeout))
		}
	}

	key := up.Key(x.ClientIP)
	var tried uint64
	var lastErr error = ErrNoTarget
	for failovers := 0; ; failovers++ {
		t, idx := up.Pick(key, tried, x.up.Now)
		if t == nil {
			WriteError(x, lastErr)
			return
		}
		x.Target = t
		x.Attempts++
		start := time.Now()
		err := up.DoH2(t, req, &ctx.Response, &x.up, h)
		x.UpstreamDuration += time.Since(start)
		if err == nil {
			up.ObserveStatus(t, ctx.Response.StatusCode(), x.up.Now)
			if r.Redirects != nil {
				r.Redirects.apply(x)
			}
			return
		}
		// A target that could not be reached saw nothing of the request, not even of a
		// streamed body: another one may serve it, as on the HTTP/1.1 path.
		if failovers < maxFailovers && upstream.IsNotSent(err) {
			lastErr = err
			tried |= bit(idx)
			continue
		}
		WriteError(x, err)
		return
	}
}

// requestTrailers is an HTTP/2 client stream's connection (package h2): the trailer section the
// client declared, filled in when its body ends.
type requestTrailers interface {
	RequestTrailer() http.Header
}

// parseGRPCTimeout reads a grpc-timeout value: at most 8 digits and a unit (H, M, S, m, u, n).
func parseGRPCTimeout(v []byte) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v[:len(v)-1]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true // 99999999H: longer than any route timeout, which caps it
	}
	return time.Duration(n) * unit, true
}

// appendGRPCTimeout writes d as a grpc-timeout value: milliseconds, or seconds when that
// would take more than 8 digits.
func appendGRPCTimeout(dst []byte, d time.Duration) []byte {
	if ms := d.Milliseconds(); ms < 1e8 {
		return append(strconv.AppendInt(dst, max(ms, 1), 10), 'm')
	}
	return append(strconv.AppendInt(dst, min(int64(d/time.Second), 99999999), 10), 'S')
}
