// Package compress is the gateway's gzip policy for a route, as the nginx it replaces did it:
// responses of a compressible type, at least min_size long, that the upstream did not encode,
// are gzipped for clients that accept gzip, with "Vary: Accept-Encoding" on every response that
// could have been compressed.
//
// A response is compressed whole, in memory, after the upstream (or the file server) is done:
// fasthttp offers no way to take over a response's body stream without closing it, and its own
// streaming compressor reads the stream from a second goroutine, which races with the pooled
// upstream stream's Close when a client goes away. So bodies that arrive as a stream are read
// whole first, and only when their declared length is at most max_size; chunked bodies and
// longer ones pass through unchanged.
package compress

import (
	"bytes"
	"sync"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fasthttp"
)

var (
	hAcceptEncoding = []byte(fasthttp.HeaderAcceptEncoding)
	hCacheControl   = []byte(fasthttp.HeaderCacheControl)
	hAcceptRanges   = []byte(fasthttp.HeaderAcceptRanges)
	hETag           = []byte(fasthttp.HeaderETag)
	vGzip           = []byte("gzip")
)

type mediaType struct {
	name   []byte // "application/json", or "text/" for "text/*"
	prefix bool
}

// Policy is a compiled compression section. Immutable; safe for concurrent use.
type Policy struct {
	minSize, maxSize int
	level            int
	types            []mediaType
}

// New compiles a compression section (validated by package config).
func New(c *config.Compression) *Policy {
	p := &Policy{minSize: int(c.MinSize.Bytes()), maxSize: int(c.MaxSize.Bytes()), level: c.Level}
	for _, t := range c.Types {
		if base, ok := bytes.CutSuffix([]byte(t), []byte("*")); ok {
			p.types = append(p.types, mediaType{name: base, prefix: true})
		} else {
			p.types = append(p.types, mediaType{name: []byte(t)})
		}
	}
	return p
}

// Middleware builds the compression policy of route, or nil when it has none. It has the shape
// of a policies.Row Middleware.
func Middleware(route *config.Route, _ *config.Config) (proxy.Middleware, error) {
	if route.Compression == nil {
		return nil, nil
	}
	p := New(route.Compression)
	return func(next proxy.Handler) proxy.Handler { return &handler{p, next} }, nil
}

type handler struct {
	p    *Policy
	next proxy.Handler
}

const headMethod = protocol.MethodHead

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	accepts := AcceptsGzip(x.Ctx.Request.Header.PeekBytes(hAcceptEncoding))
	h.next.Serve(x)
	resp := &x.Ctx.Response
	if !h.p.Compressible(resp) {
		return
	}
	proxy.AddVary(&resp.Header, hAcceptEncoding)
	if !accepts || x.Method == headMethod || resp.SkipBody {
		return
	}
	h.p.compress(resp)
}

// Compressible reports whether the response is one the policy compresses for a client that
// accepts gzip: a status with a whole body, no Content-Encoding yet, no "Cache-Control:
// no-transform", a listed type, and a length between min_size and max_size (a streamed body
// must declare its length).
func (p *Policy) Compressible(resp *fasthttp.Response) bool {
	switch code := resp.StatusCode(); {
	case code < 200, code == fasthttp.StatusNoContent, code == fasthttp.StatusPartialContent,
		code == fasthttp.StatusNotModified:
		return false
	}
	if ce := resp.Header.ContentEncoding(); len(ce) > 0 && string(ce) != "identity" {
		return false
	}
	if cc := resp.Header.PeekBytes(hCacheControl); len(cc) > 0 && containsFold(cc, "no-transform") {
		return false
	}
	if !p.typeListed(resp.Header.ContentType()) {
		return false
	}
	var n int
	if resp.IsBodyStream() || resp.SkipBody {
		n = resp.Header.ContentLength() // -1 chunked, -2 until close: not compressed
	} else {
		n = len(resp.Body())
	}
	return n >= p.minSize && n <= p.maxSize && n >= 0
}

func (p *Policy) typeListed(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimRight(ct, " \t")
	for _, t := range p.types {
		if t.prefix {
			if len(ct) > len(t.name) && bytes.EqualFold(ct[:len(t.name)], t.name) {
				return true
			}
		} else if bytes.EqualFold(ct, t.name) {
			return true
		}
	}
	return false
}

// compressor is a gzip writer for one level and the buffers it works in, pooled.
type compressor struct {
	zw   *gzip.Writer
	out  appendWriter
	etag []byte
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

var compressors [10]sync.Pool // by level

func acquireCompressor(level int) *compressor {
	if c, ok := compressors[level].Get().(*compressor); ok {
		return c
	}
	c := &compressor{}
	c.zw, _ = gzip.NewWriterLevel(&c.out, level) // level validated by package config
	return c
}

func (p *Policy) compress(resp *fasthttp.Response) {
	c := acquireCompressor(p.level)
	defer compressors[p.level].Put(c)

	var plain []byte
	streamed := resp.IsBodyStream()
	if streamed {
		// Read the stream whole (its declared length is at most max_size) and close it, which
		// hands an upstream connection back to its pool. plain is ours now.
		plain = resp.SwapBody(nil)
	} else {
		plain = resp.Body()
	}
	c.out.b = c.out.b[:0]
	c.zw.Reset(&c.out)
	_, werr := c.zw.Write(plain)
	cerr := c.zw.Close()
	if werr != nil || cerr != nil { // appendWriter never fails
		return
	}
	// The compressed bytes are copied into the buffer the body had (larger, and detached from
	// the response by SwapBody, so writing into it is safe even when the body was set raw):
	// no buffer changes hands with fasthttp's pools, and steady state allocates nothing.
	buf := plain
	if !streamed {
		buf = resp.SwapBody(nil)
	}
	resp.SwapBody(append(buf[:0], c.out.b...))

	h := &resp.Header
	h.SetContentEncodingBytes(vGzip)
	h.SetContentLength(len(c.out.b))
	h.DelBytes(hAcceptRanges) // ranges of the identity body do not apply to this one
	if etag := h.PeekBytes(hETag); len(etag) > 1 && etag[0] == '"' {
		// A strong validator names these exact bytes; the gzipped body is other bytes.
		c.etag = append(append(c.etag[:0], 'W', '/'), etag...)
		h.SetBytesKV(hETag, c.etag)
	}
}

// AcceptsGzip reports whether an Accept-Encoding value allows gzip: "gzip" (or "x-gzip") or "*"
// with a non-zero quality, unless gzip itself is given q=0.
func AcceptsGzip(v []byte) bool {
	gzip, star := -1, -1 // -1 absent, 0 refused, 1 accepted
	for len(v) > 0 {
		var item []byte
		item, v = protocol.NextListItem(v)
		coding, params, _ := bytes.Cut(item, []byte(";"))
		coding = bytes.TrimSpace(coding)
		q := 1
		if qZero(params) {
			q = 0
		}
		switch {
		case bytes.EqualFold(coding, []byte("gzip")), bytes.EqualFold(coding, []byte("x-gzip")):
			gzip = q
		case len(coding) == 1 && coding[0] == '*':
			star = q
		}
	}
	if gzip >= 0 {
		return gzip == 1
	}
	return star == 1
}

// qZero reports whether parameters hold q=0 (q=0, q=0.0, q=0.000).
func qZero(params []byte) bool {
	for len(params) > 0 {
		p := params
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			params = nil
		}
		name, val, ok := bytes.Cut(bytes.TrimSpace(p), []byte("="))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(name), []byte("q")) {
			continue
		}
		val = bytes.TrimSpace(val)
		if len(val) == 0 || val[0] != '0' {
			return false
		}
		for _, c := range val[1:] {
			if c != '.' && c != '0' {
				return false
			}
		}
		return true
	}
	return false
}

func containsFold(s []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(sub)], []byte(sub)) {
			return true
		}
	}
	return false
}
