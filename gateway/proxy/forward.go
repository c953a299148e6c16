package proxy

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/upstream"
)

// bufferBodyLimit is the largest request body read whole before forwarding; such a request can
// be sent again on a fresh connection. Larger and chunked bodies stream to the upstream.
const bufferBodyLimit = 64 << 10

// Forwarder is the last handler of a proxied route: it carries the request to a target of the
// route's upstream and leaves the upstream's response in the exchange's response.
type Forwarder struct {
	Route *Route
}

var _ Handler = (*Forwarder)(nil)

// Serve implements Handler.
func (f *Forwarder) Serve(x *Exchange) {
	r := f.Route
	up := r.Upstream
	if x.Upstream != nil {
		up = x.Upstream
	}
	ctx := x.Ctx
	req := &ctx.Request
	raw := req.Header.RawHeaders()
	if r.WebSocket != nil && isWebSocketUpgrade(x) {
		f.serveUpgrade(x, raw)
		return
	}
	if up.HTTP2() {
		f.serveH2(x, up, raw)
		return
	}

	replayable, err := prepareBody(x)
	if err != nil {
		WriteError(x, err)
		return
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
	x.up.Deadline = now.Add(r.Timeout)
	x.up.Timeout = r.Timeout
	x.up.Head = x.Method == protocol.MethodHead
	key := up.Key(x.ClientIP)

	retries := r.Retries
	if retries > 0 {
		up.Earn()
	}
	var tried uint64
	staleRetried := false
	failovers := 0
	x.up.Fresh = false
	var lastErr error
	start := now // the first attempt starts now; a repeated one reads the clock again
	for {
		t, idx := up.Pick(key, tried, x.up.Now)
		if t == nil {
			if lastErr == nil {
				lastErr = ErrNoTarget
			}
			WriteError(x, lastErr)
			return
		}
		x.Target = t
		x.Attempts++
		if x.Attempts > 1 {
			start = time.Now()
		}
		if tr := x.Snapshot.Tracer; tr != nil {
			x.traceUpstreamAt(tr, t, start)
		}
		err := up.Do(t, req, &ctx.Response, &x.up)
		var took time.Duration
		if released := x.up.Released; !released.IsZero() {
			took = released.Sub(start) // read by Do as it released the connection
		} else {
			took = time.Since(start)
		}
		x.UpstreamDuration += took
		if x.trace.attempt != nil {
			x.endAttemptAfter(ctx.Response.StatusCode(), err, took)
		}
		if err == nil {
			code := ctx.Response.StatusCode()
			up.ObserveStatus(t, code, x.up.Now)
			if retries > 0 && retryableStatus(code) && replayable && protocol.IsIdempotent(x.Method) && up.Spend() {
				retries--
				tried |= bit(idx)
				ctx.Response.Reset() // discards the answer (and closes its body stream)
				continue
			}
			if x.Wire == protocol.WireHTTP2 {
				// An HTTP/2 stream carries trailers (gRPC's status lives there): keep the
				// announcement, whose values arrive after the body (package h2 sends them).
				stripResponseHopByHopKeepTrailer(&ctx.Response.Header)
			} else {
				stripResponseHopByHop(&ctx.Response.Header)
			}
			if r.Redirects != nil {
				r.Redirects.apply(x)
			}
			return
		}
		lastErr = err
		// A keep-alive connection the upstream had closed: repeat once on a fresh connection
		// to the same target when repeating is safe. It is the transport's own retry and
		// spends nothing from the route's retries.
		if !staleRetried && replayable && staleRetryable(err, x.Method) {
			staleRetried = true
			x.up.Fresh = true // a newly dialled connection: the next idle one may be just as dead
			continue
		}
		x.up.Fresh = false
		// A request that provably never left (refused, no connection within connect_timeout or
		// queue_timeout, a pooled connection that broke before any byte was written) goes to
		// another target, whatever the method and whatever retries says: nginx's default
		// proxy_next_upstream error timeout. It spends neither the route's retries nor the
		// budget, because the upstream did no work; it stops when every target was tried.
		if failovers < maxFailovers && failoverable(err, replayable) {
			failovers++
			tried |= bit(idx)
			continue
		}
		if retries > 0 && retryableError(err, x.Method, replayable) && up.Spend() {
			retries--
			tried |= bit(idx)
			continue
		}
		WriteError(x, err)
		return
	}
}

func bit(i int) uint64 {
	if i >= 64 {
		return 0
	}
	return 1 << uint(i)
}

// retryableStatus: answers that mean "this target could not serve it", worth another target.
func retryableStatus(code int) bool { return code == 502 || code == 503 || code == 504 }

// retryableError reports whether a failed attempt may be repeated on another target: any method
// when the request cannot have reached the upstream (and its body was not consumed), idempotent
// methods with a replayable body otherwise. A client's own body failing never is.
func retryableError(err error, method int, replayable bool) bool {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return false
	}
	switch ue.Kind {
	case upstream.KindClient, upstream.KindTooLarge:
		return false
	}
	if ue.NotSent() && (replayable || ue.Kind != upstream.KindStale) {
		// Connect-phase failures never touched a streamed body; a stale connection that broke
		// while writing may have consumed part of one.
		return true
	}
	return replayable && protocol.IsIdempotent(method)
}

// maxFailovers bounds the moves to another target after unsent failures; the tried mask also
// ends them when every target was tried, but it holds only 64 targets.
const maxFailovers = 64

// failoverable reports whether a failed attempt cannot have reached the upstream and left the
// request intact, so that it may go to another target outside the retry budget.
func failoverable(err error, replayable bool) bool {
	var ue *upstream.Error
	if !errors.As(err, &ue) || !ue.NotSent() {
		return false
	}
	// Connect-phase failures never touched a streamed body; a stale connection that broke
	// while writing may have consumed part of one.
	return replayable || ue.Kind != upstream.KindStale
}

func staleRetryable(err error, method int) bool {
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Kind != upstream.KindStale {
		return false
	}
	return ue.NotSent() || protocol.IsIdempotent(method)
}

// upstreamTarget builds the request target sent upstream: the normalised path with the route's
// prefix rewrite, and the query as the client sent it.
func upstreamTarget(x *Exchange, r *Route) []byte {
	path := x.Path
	if len(r.StripPrefix) > 0 && len(path) >= len(r.StripPrefix) && string(path[:len(r.StripPrefix)]) == string(r.StripPrefix) {
		path = path[len(r.StripPrefix):]
	}
	buf := append(x.scratch[:0], r.AddPrefix...)
	switch {
	case len(path) == 0 && len(r.AddPrefix) == 0:
		buf = append(buf, '/') // the whole path was stripped
	case len(path) > 0 && path[0] != '/':
		buf = append(buf, '/')
	}
	buf = append(buf, path...)
	if len(x.Query) > 0 {
		buf = append(buf, '?')
		buf = append(buf, x.Query...)
	}
	x.scratch = buf
	return buf
}

// prepareBody decides how the request body travels. A declared length over the limit was
// refused by the entry. A small declared body is read whole, so the request can be repeated; a
// large one streams, bounded by its declared length; a chunked one streams through a counter
// that fails at the limit, because fasthttp's own limit does not apply to streamed bodies.
func prepareBody(x *Exchange) (replayable bool, err error) {
	req := &x.Ctx.Request
	stream := req.BodyStream()
	if stream == nil {
		return true, nil
	}
	cl := req.Header.ContentLength()
	switch {
	case cl >= 0 && cl <= bufferBodyLimit:
		buf := x.body.buf[:0]
		if cap(buf) < cl {
			buf = make([]byte, cl)
		}
		buf = buf[:cl]
		if _, err := io.ReadFull(stream, buf); err != nil {
			return false, clientBodyError(err)
		}
		x.body.buf = buf
		req.SetBodyRaw(buf) // the body now lives in the exchange; the stream stays with the server
		return true, nil
	case cl >= 0:
		return false, nil
	default:
		x.body.reset(stream, x.Snapshot.MaxBodyBytes)
		req.SetBodyStream(&x.body, -1)
		x.up.ClientBody = &x.body
		return false, nil
	}
}

func clientBodyError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrRequestTimeout
	}
	return ErrRequestBodyBroken
}

// cappedBody streams a client's request body to the upstream and fails once it exceeds the
// limit. It records why it failed so the transport can blame the client, not the target.
type cappedBody struct {
	r    io.Reader
	left int64
	err  error
}

// Read implements io.Reader.
func (b *cappedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if int64(n) > b.left {
		b.err = ErrBodyTooLarge
		return 0, b.err
	}
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		b.err = clientBodyError(err)
		return n, b.err
	}
	return n, err
}

// Err reports why reading the body failed, if it did.
func (b *cappedBody) Err() error { return b.err }

// limitedBody is the exchange's reusable cappedBody for a chunked HTTP/1.1 request body.
type limitedBody struct {
	cappedBody
	buf []byte // holds a small body read whole (prepareBody); reused across requests
}

func (b *limitedBody) reset(r io.Reader, limit int64) {
	b.r, b.left, b.err = r, limit, nil
}
