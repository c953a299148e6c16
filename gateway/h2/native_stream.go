package h2

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// nstream is one stream of a native connection, pooled. The reader fills it from the HEADERS
// frame and starts its handler (serve); the fields after mu's comment are guarded by the
// connection's mu.
type nstream struct {
	stream
	c  *nconn
	id uint32
	// seq tells a body reader of an earlier use of this pooled stream that it is gone. It
	// changes under the connection's mu when the handler ends (streamDone); atomic because a
	// reader of an earlier use checks it under that connection's mu while a later use may be
	// on another connection.
	seq      atomic.Uint64
	hasBody  bool
	isHead   bool
	declared int64 // the request's Content-Length, or -1
	enc      headEncoder
	block    []byte

	// Guarded by c.mu.
	reset         bool
	remoteClosed  bool
	sendWindow    int64
	inflow        int64
	pendingCredit int64
	received      int64
	body          []byte // request body bytes received and not yet read
	bodyOff       int
	bodyErr       error
	// trailer is the request's declared trailer map (StreamConn.RequestTrailer). An upstream's
	// transport holds it from the start of its round trip, iterating it at once and reading
	// the values once the body has ended; so the reader keeps the trailer section it receives
	// in trailerIn, and the goroutine reading the body moves it into the map just before that
	// read returns io.EOF (readLocked).
	trailer   http.Header
	trailerIn []hpack.HeaderField
}

// maxPooledBody is the largest request body buffer a pooled stream keeps.
const maxPooledBody = 64 << 10

// The copy buffer (stream.buf) is made when a stream first streams a body: most responses are
// whole, and each pooled stream would otherwise hold 16 KiB.
var nstreamPool = sync.Pool{New: func() any { return &nstream{} }}

func newNStream(c *nconn, id uint32) *nstream {
	ns := nstreamPool.Get().(*nstream)
	ns.c, ns.id = c, id
	ns.sendWindow = c.peerInitial
	ns.inflow = int64(c.settings.MaxUploadBufferPerStream)
	ns.declared = -1
	return ns
}

// release returns the stream to the pool. Its handler has ended (or never started).
func (ns *nstream) release() {
	st := &ns.stream
	st.ctx.Request.Reset()
	st.ctx.Response.Reset()
	st.ctx.ResetUserValues()
	st.conn = StreamConn{}
	st.head = st.head[:0]
	st.rd.Reset(nil)
	ns.c = nil
	ns.hasBody, ns.isHead = false, false
	ns.reset, ns.remoteClosed = false, false
	ns.pendingCredit, ns.received = 0, 0
	ns.body, ns.bodyOff, ns.bodyErr = ns.body[:0], 0, nil
	if cap(ns.body) > maxPooledBody {
		ns.body = nil // an upload's buffer is not kept for every later GET
	}
	ns.trailer = nil
	clear(ns.trailerIn)
	ns.trailerIn = ns.trailerIn[:0]
	ns.block = ns.block[:0]
	nstreamPool.Put(ns)
}

// errMalformed is a request HTTP/2 calls malformed (section 8.1.1): the stream is reset with
// PROTOCOL_ERROR.
type errMalformed string

func (e errMalformed) Error() string { return "h2: malformed request: " + string(e) }

// buildHead checks the request's fields (RFC 9113, section 8.2 and 8.3) and writes the HTTP/1.1
// head that fasthttp will parse: the request line from the pseudo-fields, Host from :authority,
// Cookie fields joined (section 8.2.3), and chunked framing for a body of unknown length, as
// the HTTP/1.1 path would bound it. Names (lowercase tokens), values and the order and
// uniqueness of the pseudo-fields are checked as they are decoded (native_headers.go).
func (ns *nstream) buildHead(f *headerBlock, maxHead int) error {
	var method, path, scheme, authority string
	for _, hf := range f.pseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		default: // :status, or :protocol (extended CONNECT is not offered)
			return errMalformed(hf.Name)
		}
	}
	if !protocol.IsToken(method) {
		return errMalformed(":method")
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return errMalformed("CONNECT")
		}
		path = authority
	} else if path == "" || scheme == "" || !validTarget(path) {
		return errMalformed(":path or :scheme")
	}
	regular := f.regularFields()
	host := authority
	for _, hf := range regular {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return errMalformed(hf.Name) // connection-specific (section 8.2.2)
		case "te":
			if hf.Value != "trailers" {
				return errMalformed("te")
			}
		case "host":
			if host == "" {
				host = hf.Value
			}
		case "trailer":
			// The map is the request's from now on: an upstream's transport holds it and
			// reads the values once the body has ended.
			if ns.trailer == nil {
				ns.trailer = http.Header{}
			}
			for _, k := range strings.Split(hf.Value, ",") {
				if k = strings.TrimSpace(k); k != "" {
					ns.trailer[http.CanonicalHeaderKey(k)] = nil
				}
			}
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || (ns.declared >= 0 && ns.declared != n) {
				return errMalformed("content-length")
			}
			ns.declared = n
		}
	}
	if !validAuthority(host) {
		return errMalformed(":authority")
	}
	ns.isHead = method == http.MethodHead
	ns.hasBody = !f.endStream
	if ns.hasBody && ns.declared == 0 {
		ns.hasBody = false // nothing to read, though END_STREAM may still come in an empty DATA frame
	}
	if !ns.hasBody && ns.declared > 0 {
		return errMalformed("content-length without a body")
	}

	b := append(ns.head[:0], method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	cookies := 0
	for _, hf := range regular {
		switch hf.Name {
		case "host":
			continue // :authority wins (section 8.3.1)
		case "cookie":
			cookies++
			continue
		}
		b = append(b, hf.Name...)
		b = append(b, ": "...)
		b = append(b, hf.Value...)
		b = append(b, "\r\n"...)
	}
	if cookies > 0 {
		b = append(b, "cookie: "...)
		sep := false
		for _, hf := range regular {
			if hf.Name == "cookie" {
				if sep {
					b = append(b, "; "...)
				}
				b = append(b, hf.Value...)
				sep = true
			}
		}
		b = append(b, "\r\n"...)
	}
	if ns.hasBody && ns.declared < 0 {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if f.truncated {
		// Over SETTINGS_MAX_HEADER_LIST_SIZE: x/net's Framer stopped keeping fields; a head
		// larger than the limit makes fasthttp answer it as it answers an HTTP/1.1 head too
		// large (431).
		b = append(b, "X-Truncated: "...)
		b = append(b, bytes.Repeat([]byte{'x'}, maxHead)...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	ns.head = b
	return nil
}

// validTarget reports whether a :path can stand in an HTTP/1.1 request line.
func validTarget(s string) bool {
	if s != "*" && s[0] != '/' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// validAuthority reports whether a host can stand in the Host field.
func validAuthority(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// setTrailers keeps the request's trailer section for the declared trailer map
// (RequestTrailer); without a declaration the section is dropped, as x/net's server does.
// Called by the reader with c.mu held.
func (ns *nstream) setTrailers(fields []hpack.HeaderField) {
	if ns.trailer == nil {
		return
	}
	ns.trailerIn = append(ns.trailerIn, fields...)
}

// publishTrailersLocked moves the trailer section received into the declared trailer map. It
// runs on the goroutine reading the body, as the body's end is read, with c.mu held.
func (ns *nstream) publishTrailersLocked() {
	for _, hf := range ns.trailerIn {
		k := http.CanonicalHeaderKey(hf.Name)
		ns.trailer[k] = append(ns.trailer[k], hf.Value)
	}
	clear(ns.trailerIn)
	ns.trailerIn = ns.trailerIn[:0]
}

// serve runs the stream's handler on its own goroutine and writes its response.
func (ns *nstream) serve() {
	c := ns.c
	st := &ns.stream
	ctx := &st.ctx
	st.conn = StreamConn{Conn: c.conn, ns: ns}
	ctx.Init2(&st.conn, c.srv.handler.Logger, true)
	var readTimer *time.Timer
	if err := st.parseHead(c.settings.MaxHeaderListBytes); err != nil {
		c.srv.handler.ParseError(ctx, err)
	} else {
		if ns.hasBody {
			if c.settings.ReadTimeout > 0 {
				// The body must arrive within read_timeout of the stream's start; reads after
				// it fail and the request gets 408.
				seq := ns.seq.Load()
				readTimer = time.AfterFunc(c.settings.ReadTimeout, func() { ns.readTimedOut(c, seq) })
			}
			// Its own allocation: an HTTP/2 upstream's transport may still read it on its own
			// goroutine when this stream goes back to the pool; seq makes it fail then.
			ctx.Request.SetBodyStream(&nbody{c: c, ns: ns, seq: ns.seq.Load()}, int(ns.declared))
		}
		c.srv.handler.Serve(ctx)
	}
	outcome := StreamCompleted
	if err := ns.writeResponse(&ctx.Response); err != nil {
		outcome = StreamReset
	}
	if readTimer != nil {
		readTimer.Stop()
	}
	c.srv.streams[outcome].Add(1)
	c.streamDone(ns)
	c.flush()
	ns.release()
}

// readTimedOut fails the stream's body reads once read_timeout has passed, unless the stream
// (use seq of the pooled stream, on c) has ended since.
func (ns *nstream) readTimedOut(c *nconn, seq uint64) {
	c.mu.Lock()
	if ns.seq.Load() == seq && !ns.remoteClosed && ns.bodyErr == nil {
		ns.bodyErr = os.ErrDeadlineExceeded
		c.cond.Broadcast()
	}
	c.mu.Unlock()
}

// nbody is a stream's request body as fasthttp reads it.
type nbody struct {
	c   *nconn
	ns  *nstream
	seq uint64
}

func (b *nbody) Read(p []byte) (int, error) {
	c := b.c
	c.mu.Lock()
	n, err := b.readLocked(p)
	owed := len(c.out) > 0 && !c.writing
	c.mu.Unlock()
	if owed {
		c.flush() // window updates the client may be waiting for
	}
	return n, err
}

func (b *nbody) readLocked(p []byte) (int, error) {
	ns, c := b.ns, b.c
	for {
		if ns.seq.Load() != b.seq || ns.reset {
			return 0, errStreamClosed
		}
		if n := len(ns.body) - ns.bodyOff; n > 0 {
			n = copy(p, ns.body[ns.bodyOff:])
			ns.bodyOff += n
			if ns.bodyOff == len(ns.body) {
				ns.body, ns.bodyOff = ns.body[:0], 0
			}
			c.creditLocked(ns, int64(n))
			return n, nil
		}
		if ns.remoteClosed {
			ns.publishTrailersLocked()
			return 0, io.EOF
		}
		if ns.bodyErr != nil {
			return 0, ns.bodyErr
		}
		if c.werr != nil {
			return 0, c.werr
		}
		c.cond.Wait()
	}
}

// writeResponse sends resp on the stream: HEADERS, the body in DATA frames as the client's
// windows allow, then trailers; a streamed body is sent as it arrives and flushed whenever its
// producer pauses.
func (ns *nstream) writeResponse(resp *fasthttp.Response) error {
	f := framingOf(resp, ns.isHead)
	noBody, bodyStream, body := f.noBody, f.stream, f.body
	ns.block = ns.appendHead(ns.block[:0], resp.StatusCode(), &resp.Header, f.length)
	// TrailerHeader is the trailer section as text, ending with its empty line: "\r\n" when
	// there is none.
	hasTrailer := len(resp.Header.TrailerHeader()) > 2

	if bodyStream != nil {
		err := ns.send(ns.block, nil, noBody)
		if err == nil && !noBody {
			err = ns.copyBody(bodyStream)
		}
		if err == nil && !noBody {
			err = ns.endWithTrailers(&resp.Header)
		}
		closeStream(resp, err)
		return err
	}
	if hasTrailer && !noBody {
		if err := ns.send(ns.block, body, false); err != nil {
			return err
		}
		return ns.endWithTrailers(&resp.Header)
	}
	return ns.send(ns.block, body, true)
}

// appendHead encodes the response head: status, the fields HTTP/2 allows, Content-Length clen
// (none when negative) and the gateway's Date, as fasthttp writes both over HTTP/1.1.
func (ns *nstream) appendHead(b []byte, code int, h *fasthttp.ResponseHeader, clen int) []byte {
	b = appendStatus(b, code)
	for k, v := range h.All() {
		switch {
		case connectionSpecific(k), protocol.EqualFold(k, "trailer"),
			protocol.EqualFold(k, "content-length"), protocol.EqualFold(k, "date"):
			continue
		}
		b = ns.enc.appendField(b, k, v)
	}
	if clen >= 0 {
		var n [20]byte
		b = ns.enc.appendField(b, []byte("content-length"), strconv.AppendInt(n[:0], int64(clen), 10))
	}
	return ns.enc.appendField(b, []byte("date"), s2b(httpDate(time.Now())[0]))
}

// s2b is s as bytes, without a copy: the encoder only reads them.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// send writes a header block (when not nil), then body, ending the stream with the last frame
// when end is set. It waits for flow-control window and for room in the connection's output.
func (ns *nstream) send(block, body []byte, end bool) error {
	c := ns.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if ns.reset {
		return errStreamClosed
	}
	if c.werr != nil {
		return c.werr
	}
	if block != nil {
		c.out = appendHeaders(c.outBuf(), ns.id, block, end && len(body) == 0, c.peerMaxFrame)
		if end && len(body) == 0 {
			return nil
		}
	}
	return ns.sendDataLocked(body, end)
}

// sendDataLocked writes body as DATA frames, within the client's windows.
func (ns *nstream) sendDataLocked(body []byte, end bool) error {
	c := ns.c
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if ns.reset {
			return errStreamClosed
		}
		if c.werr != nil {
			return c.werr
		}
		if len(body) == 0 {
			if end {
				c.out = appendFrameHeader(c.outBuf(), 0, http2.FrameData, http2.FlagDataEndStream, ns.id)
			}
			return nil
		}
		n := int64(min(len(body), c.peerMaxFrame))
		n = min(n, c.sendWindow, ns.sendWindow)
		if n <= 0 {
			if timer == nil && c.settings.WriteTimeout > 0 {
				// A client that never opens its window would hold the handler forever.
				seq := ns.seq.Load()
				timer = time.AfterFunc(c.settings.WriteTimeout, func() {
					c.mu.Lock()
					if ns.seq.Load() == seq && !ns.reset {
						c.resetLocked(ns.id, http2.ErrCodeFlowControl)
					}
					c.mu.Unlock()
				})
			}
			if len(c.out) > 0 && !c.writing {
				c.mu.Unlock()
				c.flush()
				c.mu.Lock()
				continue
			}
			c.cond.Wait()
			continue
		}
		var flags http2.Flags
		if end && int(n) == len(body) {
			flags = http2.FlagDataEndStream
		}
		c.out = appendFrameHeader(c.outBuf(), int(n), http2.FrameData, flags, ns.id)
		c.out = append(c.outBuf(), body[:n]...)
		body = body[n:]
		c.sendWindow -= n
		ns.sendWindow -= n
		if flags != 0 {
			return nil
		}
		if err := c.waitForRoomLocked(); err != nil {
			return err
		}
	}
}

// copyBody sends a streamed body: a read that fills the buffer means more is waiting, so it is
// sent without a flush; a short read means the producer paused, so what there is goes out now.
func (ns *nstream) copyBody(src io.Reader) error {
	if ns.buf == nil {
		ns.buf = make([]byte, 16<<10)
	}
	buf := ns.buf
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := ns.send(nil, buf[:n], false); werr != nil {
				return werr
			}
			if n < len(buf) {
				ns.c.flush()
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

// endWithTrailers ends the stream: with the response's trailer fields as a HEADERS frame when
// there are any, otherwise with an empty DATA frame.
func (ns *nstream) endWithTrailers(h *fasthttp.ResponseHeader) error {
	ns.block = ns.block[:0]
	forEachTrailer(h, func(name, value []byte) { ns.block = ns.enc.appendField(ns.block, name, value) })
	if len(ns.block) == 0 {
		return ns.send(nil, nil, true)
	}
	return ns.send(ns.block, nil, true)
}

// writeInterim sends a 1xx response head on the stream.
func (ns *nstream) writeInterim(h *fasthttp.ResponseHeader) {
	block := appendStatus(nil, h.StatusCode())
	for k, v := range h.All() {
		if connectionSpecific(k) || protocol.EqualFold(k, "content-length") || protocol.EqualFold(k, "content-type") {
			continue
		}
		block = ns.enc.appendField(block, k, v)
	}
	if ns.send(block, nil, false) == nil {
		ns.c.flush()
	}
}
