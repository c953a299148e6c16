package h2

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/valyala/fasthttp"
)

// connHandler serves the streams of one HTTP/2 connection. x/net/http2 calls ServeHTTP on a
// goroutine of its own per stream.
type connHandler struct {
	srv     *Server
	conn    net.Conn
	maxHead int
	// readTimeout bounds the reading of a request body (server.http2.read_timeout).
	readTimeout time.Duration
}

// readDeadliner is x/net/http2's ResponseWriter setting its stream's read deadline.
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// stream is the per-stream state, pooled: the fasthttp request context the gateway's handler
// serves, the connection it sees, and the buffers that rebuild the request head.
type stream struct {
	ctx  fasthttp.RequestCtx
	conn StreamConn
	head []byte
	rd   bytes.Reader
	buf  []byte
	body bodyReader
	// vals and fields gather the response's fields before they become the head's strings.
	vals   []byte
	fields []field
}

// field is one response field: its name and where its value is in stream.vals.
type field struct {
	name       string
	start, end int
}

// bodyReader hides the request body's Close from fasthttp.
type bodyReader struct{ r io.Reader }

func (b *bodyReader) Read(p []byte) (int, error) { return b.r.Read(p) }

var streamPool = sync.Pool{New: func() any { return &stream{buf: make([]byte, 32<<10)} }}

// StreamConn is the connection a stream's fasthttp.RequestCtx reports (RequestCtx.Conn): the
// client's connection for its addresses and, through NetConn, its TLS state, but reading and
// writing it is refused, because the bytes on it are HTTP/2 frames. The gateway recognises it
// to label the request HTTP/2 and to send interim responses as HEADERS frames.
type StreamConn struct {
	net.Conn
	// w and trailer are the stream's under x/net's engine; ns under the native one.
	w       http.ResponseWriter
	trailer http.Header
	ns      *nstream
}

// errStreamConn is returned to anything that tries to use a stream's connection as a byte
// stream (a WebSocket hijack cannot happen: HTTP/2 refuses the Upgrade header).
var errStreamConn = errors.New("h2: the connection carries HTTP/2 frames; use the stream")

func (c *StreamConn) Read([]byte) (int, error)  { return 0, errStreamConn }
func (c *StreamConn) Write([]byte) (int, error) { return 0, errStreamConn }
func (c *StreamConn) Close() error              { return nil }

// RequestTrailer is the request's trailer section: the names the client declared, their values
// filled in once the request body has been read to its end (nil when none was declared). The
// HTTP/2 upstream transport sends it on after the body it streams from the same stream.
func (c *StreamConn) RequestTrailer() http.Header {
	if c.ns != nil {
		c.ns.c.mu.Lock()
		defer c.ns.c.mu.Unlock()
		return c.ns.trailer
	}
	return c.trailer
}

// NetConn is the client's connection, for code that looks through wrappers for TLS state.
func (c *StreamConn) NetConn() net.Conn { return c.Conn }

// HTTP2 marks the connection as an HTTP/2 stream.
func (c *StreamConn) HTTP2() bool { return true }

// WriteInterim sends an interim (1xx) response on the stream, without the fields HTTP/2
// forbids. It must be called from the handler's goroutine, before the final response.
func (c *StreamConn) WriteInterim(h *fasthttp.ResponseHeader) {
	code := h.StatusCode()
	if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
		return
	}
	if c.ns != nil {
		c.ns.writeInterim(h)
		return
	}
	hdr := c.w.Header()
	for k, v := range h.All() {
		if connectionSpecific(k) || protocol.EqualFold(k, "content-length") || protocol.EqualFold(k, "content-type") {
			continue
		}
		name := string(k)
		hdr[name] = append(hdr[name], string(v))
	}
	c.w.WriteHeader(code)
	// net/http keeps the map for the final response: the interim fields belong to the 1xx only.
	clear(hdr)
}

// ServeHTTP turns the stream into a fasthttp request, serves it with the gateway's handler and
// writes the response to the stream.
func (h *connHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := streamPool.Get().(*stream)
	defer func() {
		st.ctx.Request.Reset()
		st.ctx.Response.Reset()
		st.ctx.ResetUserValues()
		st.conn = StreamConn{}
		st.body.r = nil
		st.head = st.head[:0]
		st.rd.Reset(nil)
		st.vals, st.fields = st.vals[:0], st.fields[:0]
		streamPool.Put(st)
	}()
	st.conn = StreamConn{Conn: h.conn, w: w, trailer: r.Trailer}
	ctx := &st.ctx
	ctx.Init2(&st.conn, h.srv.handler.Logger, true)

	if err := st.readHead(r, h.maxHead); err != nil {
		h.srv.handler.ParseError(ctx, err)
	} else {
		if hasBody(r) {
			if d, ok := w.(readDeadliner); ok && h.readTimeout > 0 {
				// The body must arrive within read_timeout of the stream's start, as with
				// http.Server.ReadTimeout; reads after it fail and the request gets 408.
				_ = d.SetReadDeadline(ctx.Time().Add(h.readTimeout))
			}
			// Behind a reader without Close: fasthttp closes a request's stream whenever the
			// body is replaced (the gateway reads small bodies whole), and x/net/http2 closes
			// the stream's body itself when the handler returns. Its own allocation, not the
			// pooled stream's: an HTTP/2 upstream's transport may still be reading it on its
			// own goroutine when this stream goes back to the pool.
			ctx.Request.SetBodyStream(&bodyReader{r: r.Body}, int(r.ContentLength))
		}
		h.srv.handler.Serve(ctx)
	}
	outcome := StreamCompleted
	if err := writeResponse(w, r, &ctx.Response, st); err != nil || r.Context().Err() != nil {
		outcome = StreamReset // x/net cancels the stream's context when it is reset or its connection ends
	}
	h.srv.streams[outcome].Add(1)
}

// hasBody reports whether the request has a body to read: a declared length above 0, or none
// declared and the stream not ended with its headers.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// readHead rebuilds the HTTP/1.1 head of the stream's request and has fasthttp parse it, so the
// request is exactly what the HTTP/1.1 path sees: the same header parser, the same raw header
// bytes for the gateway's header checks, the same head size limit (ErrSmallBuffer, 431).
// x/net/http2 has already refused what HTTP/2 forbids (connection-specific fields, TE other than
// trailers, uppercase names, pseudo-headers out of place: RFC 9113, section 8.2) and joined
// split Cookie fields.
func (st *stream) readHead(r *http.Request, maxHead int) error {
	b := append(st.head[:0], r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for k, vv := range r.Header {
		if k == "Host" {
			continue // :authority wins (RFC 9113, section 8.3.1); net/http put it in r.Host
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if r.ContentLength < 0 && hasBody(r) {
		// A body without a declared length: over HTTP/1.1 it would be chunked, and the gateway
		// bounds it the same way (a counting reader, 413 at max_body_bytes).
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	st.head = b
	return st.parseHead(maxHead)
}

// parseHead has fasthttp parse the HTTP/1.1 head in st.head into the stream's request, through a
// reader of maxHead bytes: a longer head fails with fasthttp.ErrSmallBuffer (431), as over
// HTTP/1.1.
//
// The reader is pooled, not the stream's: it is needed only while fasthttp parses (which copies
// what it keeps), and a stream in flight would otherwise hold max_header_bytes (16 KiB by
// default) for the whole upstream exchange.
func (st *stream) parseHead(maxHead int) error {
	st.rd.Reset(st.head)
	br, _ := headReaders.Get().(*bufio.Reader)
	if br == nil || br.Size() != max(maxHead, 16) {
		br = bufio.NewReaderSize(&st.rd, maxHead)
	} else {
		br.Reset(&st.rd)
	}
	err := st.ctx.Request.Header.Read(br)
	br.Reset(nil)
	headReaders.Put(br)
	return err
}

// headReaders are the readers fasthttp parses rebuilt request heads through.
var headReaders sync.Pool

// writeResponse writes resp to the stream: status, fields without the connection-specific ones,
// the body (a streamed body is copied as it arrives and flushed whenever the producer pauses),
// then the trailer fields, and returns why writing failed. A complete body is written without
// a flush: x/net/http2 sends the head, the body and END_STREAM together when the handler
// returns.
func writeResponse(w http.ResponseWriter, r *http.Request, resp *fasthttp.Response, st *stream) error {
	hdr := w.Header()
	code := resp.StatusCode()
	f := framingOf(resp, r.Method == http.MethodHead)
	noBody, stream, body, clen := f.noBody, f.stream, f.body, f.length
	setHead(hdr, &resp.Header, clen, st, time.Now())
	w.WriteHeader(code)

	var werr error
	if stream != nil {
		if !noBody {
			werr = copyFlushing(w, stream, st.buf, int64(clen))
		}
		if werr == nil {
			// The stream has reached its end: an upstream's trailer fields are read by now,
			// and closing the stream may hand its connection back.
			writeTrailers(hdr, &resp.Header)
		}
		closeStream(resp, werr)
		return werr
	}
	if len(body) > 0 {
		_, werr = w.Write(body)
	}
	if werr == nil {
		writeTrailers(hdr, &resp.Header)
	}
	return werr
}

// framing is how a response travels on a stream: with no body at all (HEAD, 204, 304, 1xx),
// as a streamed body, or as bytes; and the Content-Length it declares (-1 for none).
type framing struct {
	noBody bool
	stream io.Reader
	body   []byte
	length int
}

// framingOf is resp's framing; head reports a HEAD request, whose answer keeps the length it
// declares but sends no body.
func framingOf(resp *fasthttp.Response, head bool) framing {
	code := resp.StatusCode()
	f := framing{length: -1, stream: resp.BodyStream()}
	f.noBody = head || code == http.StatusNoContent || code == http.StatusNotModified || (code >= 100 && code < 200)
	switch {
	case f.stream == nil && !f.noBody:
		f.body = resp.Body()
		f.length = len(f.body)
	case head || f.stream != nil:
		if cl := resp.Header.ContentLength(); cl >= 0 && code != http.StatusNoContent && code != http.StatusNotModified {
			f.length = cl
		}
	}
	return f
}

// setHead fills the stream's response fields from h, with Content-Length clen (none when
// negative) and the gateway's Date, as fasthttp writes both over HTTP/1.1.
//
// x/net/http2 reads the map after the handler has returned (the head goes out with the body
// when the handler ends), so nothing in it may point into the pooled stream: the values are
// gathered in st.vals and copied into one string, every field's []string is a slice of one
// array, and common names are constants. That is two allocations for the whole head, not two
// per field.
func setHead(hdr http.Header, h *fasthttp.ResponseHeader, clen int, st *stream, now time.Time) {
	vals, fields := st.vals[:0], st.fields[:0]
	hasType := false
	for k, v := range h.All() {
		switch {
		case connectionSpecific(k), protocol.EqualFold(k, "trailer"):
			continue
		case protocol.EqualFold(k, "content-length"), protocol.EqualFold(k, "date"):
			continue // set below
		case protocol.EqualFold(k, "content-type"):
			hasType = true
		}
		start := len(vals)
		vals = append(vals, v...)
		fields = append(fields, field{name: fieldName(k), start: start, end: len(vals)})
	}
	if clen >= 0 {
		start := len(vals)
		vals = strconv.AppendInt(vals, int64(clen), 10)
		fields = append(fields, field{name: "Content-Length", start: start, end: len(vals)})
	}
	all := string(vals)
	slots := make([]string, len(fields))
	for i, f := range fields {
		slots[i] = all[f.start:f.end]
		if prev := hdr[f.name]; len(prev) > 0 {
			hdr[f.name] = append(prev, slots[i]) // a repeated field (Set-Cookie)
			continue
		}
		hdr[f.name] = slots[i : i+1 : i+1]
	}
	if !hasType {
		hdr["Content-Type"] = nil // no sniffed type: the upstream sent none
	}
	hdr["Date"] = httpDate(now)
	st.vals, st.fields = vals[:0], fields[:0]
}

// commonFields are the names of response fields seen on most responses, as fasthttp spells them
// (normalised), so that naming them in the head costs no allocation. x/net/http2 lowercases
// names when it encodes them.
var commonFields = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Age", "Allow", "Alt-Svc", "Cache-Control", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Range", "Content-Security-Policy",
		"Content-Type", "Etag", "Expires", "Grpc-Encoding", "Grpc-Message", "Grpc-Status", "Last-Modified",
		"Link", "Location", "Ratelimit-Limit", "Ratelimit-Policy", "Ratelimit-Remaining", "Ratelimit-Reset",
		"Referrer-Policy", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Vary",
		"Www-Authenticate", "X-Cache", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
		"X-Xss-Protection",
	} {
		m[n] = n
	}
	return m
}()

// fieldName is k as a string: a constant for a common name, a copy otherwise.
func fieldName(k []byte) string {
	if n, ok := commonFields[string(k)]; ok {
		return n
	}
	return string(k)
}

// dateCache is the Date field of the current second, shared by every stream: x/net/http2
// would otherwise format one per response, and over HTTP/1.1 fasthttp sends its own too.
type dateCache struct {
	unix  int64
	value []string // len 1, cap 1: an append by anyone copies it
}

var lastDate atomic.Pointer[dateCache]

// httpDate is the Date field for now, formatted once a second.
func httpDate(now time.Time) []string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.unix == sec {
		return d.value
	}
	d := &dateCache{unix: sec, value: []string{now.UTC().Format(http.TimeFormat)}}
	lastDate.Store(d)
	return d.value
}

// copyFlushing copies a streamed body to the stream. A read that fills the buffer means more is
// waiting: it is written without a flush, so large bodies go out in full frames; a short read
// means the producer paused (an event stream, a slow upstream), so what it gave is flushed now.
//
// Once a body of declared length clen is complete nothing is flushed: the handler's end sends
// what is left with END_STREAM, one frame fewer and one wake-up of the connection's writer less.
func copyFlushing(w http.ResponseWriter, src io.Reader, buf []byte, clen int64) error {
	f, _ := w.(http.Flusher)
	var sent int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			sent += int64(n)
			if n < len(buf) && f != nil && sent != clen {
				f.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// closeStream releases a streamed body: an upstream's stream given the reason it was not read
// to its end (so its connection is dropped, not reused), any other closable stream closed.
func closeStream(resp *fasthttp.Response, werr error) {
	if c, ok := resp.BodyStream().(fasthttp.ReadCloserWithError); ok && werr != nil {
		_ = c.CloseWithError(werr)
		return
	}
	_ = resp.CloseBodyStream()
}

// writeTrailers passes the response's trailer fields (an upstream's, read after its chunked
// body) on as the stream's trailers.
func writeTrailers(hdr http.Header, h *fasthttp.ResponseHeader) {
	forEachTrailer(h, func(name, value []byte) {
		key := http.TrailerPrefix + string(name)
		hdr[key] = append(hdr[key], string(value))
	})
}

// forEachTrailer calls f with each trailer field of h that HTTP/2 may carry.
func forEachTrailer(h *fasthttp.ResponseHeader, f func(name, value []byte)) {
	t := h.TrailerHeader()
	for len(t) > 0 {
		i := bytes.Index(t, []byte("\r\n"))
		if i < 0 {
			break
		}
		line := t[:i]
		t = t[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		if connectionSpecific(name) {
			continue
		}
		f(name, bytes.TrimSpace(line[colon+1:]))
	}
}

// connectionSpecific reports the fields HTTP/2 forbids in a message (RFC 9113, section 8.2.2):
// they describe one HTTP/1.1 connection.
func connectionSpecific(k []byte) bool {
	switch len(k) {
	case 2:
		return protocol.EqualFold(k, "te")
	case 7:
		return protocol.EqualFold(k, "upgrade")
	case 10:
		return protocol.EqualFold(k, "connection") || protocol.EqualFold(k, "keep-alive")
	case 16:
		return protocol.EqualFold(k, "proxy-connection")
	case 17:
		return protocol.EqualFold(k, "transfer-encoding")
	}
	return false
}
