// Package cache is the per-route response cache: an RFC 9111 shared cache in front of a route's
// upstream, in memory within a byte budget, optionally backed by a tier in Redis that every
// replica shares.
//
// What is stored: responses to GET requests without Authorization or Cookie (unless the route
// sets cache.authorized), without Range, whose Cache-Control allows a shared cache to store them
// (no no-store, private or no-cache), without Set-Cookie (unless cache.set_cookie, and then
// stored without it), with a Vary other than "*", and whose body fits cache.max_entry_bytes.
// Freshness is s-maxage, else max-age, else Expires, else the route's ttl for statuses that may
// be cached heuristically. Bodies the upstream sends buffered are copied; streamed bodies
// (over 64 KiB, or chunked) are read into memory when they fit max_entry_bytes and then served
// from memory, and otherwise stream through untouched with the part already read in front.
package cache

import (
	"bytes"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
)

// Method indexes in protocol.Methods.
var (
	methodGet  = protocol.MethodGet
	methodHead = protocol.MethodHead
)

var (
	hAge           = []byte("Age")
	hXCache        = []byte("X-Cache")
	hCacheControl  = []byte("Cache-Control")
	hPragma        = []byte("Pragma")
	hAuthorization = []byte("Authorization")
	hCookie        = []byte("Cookie")
	hRange         = []byte("Range")
	hVary          = []byte("Vary")
	hETag          = []byte("ETag")
	hLastModified  = []byte("Last-Modified")
	hExpires       = []byte("Expires")
	hDate          = []byte("Date")
	hINM           = []byte("If-None-Match")
	hIMS           = []byte("If-Modified-Since")
	hSetCookie     = []byte("Set-Cookie")

	vHit    = []byte("HIT")
	vMiss   = []byte("MISS")
	vStale  = []byte("STALE")
	vBypass = []byte("BYPASS")
)

// notStored are response headers the cache never replays: per-connection or per-response ones,
// and those it sets itself.
var notStored = []string{
	"Age", "X-Cache", "Set-Cookie", "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length",
	"X-Request-Id", "Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", "Proxy-Authenticate", "Trailer", "Upgrade",
}

// notModifiedHeaders are the stored headers a 304 carries (RFC 9110 §15.4.5).
var notModifiedHeaders = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Last-Modified"}

// middleware is one route's cache in one snapshot.
type middleware struct {
	next       proxy.Handler
	rc         *routeCache
	ttl, swr   int64 // ns
	maxEntry   int
	vary       [][]byte
	authorized bool
	setCookie  bool
	tier       *redisTier // nil: memory only
}

func newMiddleware(rc *routeCache, c *config.Cache, tier *redisTier) *middleware {
	m := &middleware{
		rc: rc, ttl: int64(c.TTL), swr: int64(c.StaleWhileRevalidate), maxEntry: int(c.MaxEntryBytes),
		authorized: c.Authorized, setCookie: c.SetCookie, tier: tier,
	}
	for _, h := range c.Vary {
		m.vary = append(m.vary, []byte(textproto.CanonicalMIMEHeaderKey(h)))
	}
	return m
}

// Serve implements proxy.Handler.
func (m *middleware) Serve(x *proxy.Exchange) {
	if x.Method != methodGet && x.Method != methodHead {
		m.next.Serve(x)
		return
	}
	req := &x.Ctx.Request.Header
	if (!m.authorized && (len(req.PeekBytes(hAuthorization)) > 0 || len(req.PeekBytes(hCookie)) > 0)) ||
		len(req.PeekBytes(hRange)) > 0 {
		m.bypass(x)
		return
	}
	cc := req.PeekBytes(hCacheControl)
	rcc := parseCacheControl(cc)
	if rcc.noStore {
		m.bypass(x)
		return
	}
	revalidate := rcc.noCache || rcc.maxAge == 0 || (len(cc) == 0 && bytes.Contains(req.PeekBytes(hPragma), []byte("no-cache")))

	var buf [512]byte
	key := m.appendKey(buf[:0], x)
	now := time.Now().UnixNano()
	if !revalidate {
		if e, full := m.lookup(x, key, now); e != nil {
			if now < e.FreshUntil {
				m.rc.hits.Add(1)
				m.serve(x, e, now, vHit)
				return
			}
			if now < e.StaleUntil {
				m.rc.stale.Add(1)
				m.refresh(x, e, full)
				m.serve(x, e, now, vStale)
				return
			}
		}
	}
	if x.Method == methodHead {
		// HEAD is answered from stored GET responses but never fills the cache.
		m.rc.misses.Add(1)
		m.next.Serve(x)
		x.Ctx.Response.Header.SetCanonical(hXCache, vMiss)
		return
	}
	m.miss(x, key, now)
}

func (m *middleware) bypass(x *proxy.Exchange) {
	m.rc.bypass.Add(1)
	m.next.Serve(x)
	x.Ctx.Response.Header.SetCanonical(hXCache, vBypass)
}

// lookup finds the entry for the request, following a variant index, and returns it with the
// key it is stored under. It tries memory, then the Redis tier.
func (m *middleware) lookup(x *proxy.Exchange, key []byte, now int64) (*Entry, []byte) {
	e := m.get(key, now)
	if e != nil && e.VaryNames != nil {
		key = appendVary(key, &x.Ctx.Request.Header, e.VaryNames)
		e = m.get(key, now)
		if e != nil && e.VaryNames != nil {
			return nil, key
		}
	}
	return e, key
}

func (m *middleware) get(key []byte, now int64) *Entry {
	s := m.rc.store
	e := s.Get(s.Hash(key), key)
	if e == nil && m.tier != nil {
		if e = m.tier.get(key); e != nil {
			s.Put(e)
		}
	}
	if e != nil && now >= e.StaleUntil {
		return nil
	}
	return e
}

// serve answers from e, with 304 when the request's conditions match it.
func (m *middleware) serve(x *proxy.Exchange, e *Entry, now int64, how []byte) {
	resp := &x.Ctx.Response
	resp.Reset()
	if notModified(&x.Ctx.Request.Header, e) {
		resp.SetStatusCode(fasthttp.StatusNotModified)
		for _, kv := range e.Header {
			if slices.Contains(notModifiedHeaders, string(kv.Key)) {
				resp.Header.AddBytesKV(kv.Key, kv.Value)
			}
		}
		resp.SkipBody = true
	} else {
		resp.SetStatusCode(e.Status)
		for _, kv := range e.Header {
			resp.Header.AddBytesKV(kv.Key, kv.Value)
		}
		resp.SetBodyRaw(e.Body)
	}
	var num [20]byte
	resp.Header.SetCanonical(hAge, strconv.AppendInt(num[:0], e.Age(now), 10))
	resp.Header.SetCanonical(hXCache, how)
}

// notModified evaluates If-None-Match, or else If-Modified-Since, against e (RFC 9110 §13.2.2).
func notModified(req *fasthttp.RequestHeader, e *Entry) bool {
	if e.Status != fasthttp.StatusOK {
		return false
	}
	if inm := req.PeekBytes(hINM); len(inm) > 0 {
		return etagMatches(inm, e.ETag)
	}
	if ims := req.PeekBytes(hIMS); len(ims) > 0 && e.LastMod > 0 {
		t, err := fasthttp.ParseHTTPDate(ims)
		return err == nil && e.LastMod <= t.Unix()
	}
	return false
}

// miss forwards the request and stores the response when it may. Concurrent misses for one key
// wait for the first, which alone goes upstream.
func (m *middleware) miss(x *proxy.Exchange, key []byte, now int64) {
	h := m.rc.store.Hash(key)
	f, leader := m.rc.flights.join(h)
	if !leader {
		m.rc.collapsed.Add(1)
		timeout := time.NewTimer(x.Route.Timeout)
		select {
		case <-f.done:
		case <-timeout.C:
		}
		timeout.Stop()
		now = time.Now().UnixNano()
		if e, _ := m.lookup(x, key, now); e != nil && now < e.FreshUntil {
			m.rc.hits.Add(1)
			m.serve(x, e, now, vHit)
			return
		}
		// The first response could not be shared (private, too large, failed): go ourselves.
		m.rc.misses.Add(1)
		m.next.Serve(x)
		x.Ctx.Response.Header.SetCanonical(hXCache, vMiss)
		return
	}
	defer m.rc.flights.finish(h, f)
	m.rc.misses.Add(1)

	// Ask for a full response the cache can store; the client's conditions are answered here.
	req := &x.Ctx.Request.Header
	var inm, ims []byte
	if v := req.PeekBytes(hINM); len(v) > 0 {
		inm = append([]byte(nil), v...)
		req.DelBytes(hINM)
	}
	if v := req.PeekBytes(hIMS); len(v) > 0 {
		ims = append([]byte(nil), v...)
		req.DelBytes(hIMS)
	}
	m.next.Serve(x)
	e := m.capture(x, key, now)
	if e != nil && (inm != nil || ims != nil) {
		if inm != nil {
			req.SetBytesKV(hINM, inm)
		}
		if ims != nil {
			req.SetBytesKV(hIMS, ims)
		}
		if notModified(req, e) {
			m.serve(x, e, time.Now().UnixNano(), vMiss)
			return
		}
	}
	x.Ctx.Response.Header.SetCanonical(hXCache, vMiss)
}

// capture stores the response in x when RFC 9111 and the route allow it, and returns the entry.
func (m *middleware) capture(x *proxy.Exchange, key []byte, now int64) *Entry {
	if x.Err != nil {
		return nil
	}
	resp := &x.Ctx.Response
	rh := &resp.Header
	status := resp.StatusCode()
	cc := parseCacheControl(rh.PeekBytes(hCacheControl))
	if cc.noStore || cc.private || cc.noCache {
		return nil
	}
	hasCookie := len(rh.PeekBytes(hSetCookie)) > 0
	if hasCookie && !m.setCookie {
		return nil
	}
	varyNames, ok := m.extraVary(rh.PeekBytes(hVary))
	if !ok {
		return nil
	}
	var lifetime int64
	switch {
	case cc.sMaxAge >= 0:
		lifetime = cc.sMaxAge * 1e9
	case cc.maxAge >= 0:
		lifetime = cc.maxAge * 1e9
	case len(rh.PeekBytes(hExpires)) > 0:
		exp, err := fasthttp.ParseHTTPDate(rh.PeekBytes(hExpires))
		if err != nil {
			return nil // an invalid Expires means already expired
		}
		base := now
		if d, err := fasthttp.ParseHTTPDate(rh.PeekBytes(hDate)); err == nil {
			base = d.UnixNano()
		}
		lifetime = exp.UnixNano() - base
	case heuristicStatus(status):
		lifetime = m.ttl
	}
	if lifetime <= 0 {
		return nil
	}
	body, ok := m.body(x)
	if !ok {
		return nil
	}
	initialAge := int64(0)
	if v := rh.PeekBytes(hAge); len(v) > 0 {
		initialAge = seconds(v)
	}
	swr := m.swr
	if cc.staleWhileRevalidate >= 0 {
		swr = cc.staleWhileRevalidate * 1e9
	}
	if cc.mustRevalidate {
		swr = 0
	}
	e := &Entry{
		Key: string(key), Path: string(x.Path), Status: status, Body: body, StoredAt: now, InitialAge: initialAge,
		FreshUntil: now + lifetime - initialAge*1e9,
	}
	e.StaleUntil = e.FreshUntil + swr
	for k, v := range rh.All() {
		name := string(k) // canonical already; the compiler does not allocate for the lookup
		if slices.Contains(notStored, name) {
			continue
		}
		e.Header = append(e.Header, KV{append([]byte(nil), k...), append([]byte(nil), v...)})
	}
	e.ETag = append([]byte(nil), rh.PeekBytes(hETag)...)
	if lm, err := fasthttp.ParseHTTPDate(rh.PeekBytes(hLastModified)); err == nil {
		e.LastMod = lm.Unix()
	}
	if e.FreshUntil <= now && e.StaleUntil <= now {
		return nil
	}
	if len(varyNames) > 0 {
		index := &Entry{Key: e.Key, Path: e.Path, StoredAt: now, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, VaryNames: varyNames}
		m.put(index)
		e.Key = string(appendVary(key, &x.Ctx.Request.Header, varyNames))
	}
	m.put(e)
	return e
}

func (m *middleware) put(e *Entry) {
	m.rc.store.Put(e)
	if m.tier != nil {
		m.tier.put(e)
	}
}

// extraVary returns the upstream's Vary names the route's key does not already hold, sorted;
// false for "Vary: *", which no stored response can satisfy.
func (m *middleware) extraVary(v []byte) ([]string, bool) {
	var names []string
	for len(v) > 0 {
		var item []byte
		item, v = protocol.NextListItem(v)
		if len(item) == 0 {
			continue
		}
		if string(item) == "*" {
			return nil, false
		}
		name := textproto.CanonicalMIMEHeaderKey(string(item))
		if slices.ContainsFunc(m.vary, func(b []byte) bool { return string(b) == name }) || slices.Contains(names, name) {
			continue
		}
		if (name == "Authorization" || name == "Cookie") && !m.authorized {
			return nil, false
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, true
}

// body returns a copy of the response body to store, reading a streamed body when it fits.
func (m *middleware) body(x *proxy.Exchange) ([]byte, bool) {
	resp := &x.Ctx.Response
	stream := resp.BodyStream()
	if stream == nil {
		b := resp.Body()
		if len(b) > m.maxEntry {
			return nil, false
		}
		return append([]byte(nil), b...), true
	}
	cl := resp.Header.ContentLength()
	if cl > m.maxEntry {
		return nil, false // streams through untouched
	}
	rest := upstream.Detach(stream)
	if rest == nil {
		return nil, false
	}
	buf := make([]byte, 0, max(cl, 32<<10))
	for len(buf) <= m.maxEntry {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), m.maxEntry+1-len(buf)))
		}
		n, err := rest.Read(buf[len(buf):min(cap(buf), m.maxEntry+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			_ = rest.Close()
			resp.SetBodyRaw(buf)
			return buf, true
		}
		if err != nil {
			_ = rest.Close()
			proxy.WriteError(x, err)
			return nil, false
		}
	}
	// Larger than an entry may be: send what was read, then the rest as it comes.
	resp.SetBodyStream(&prefixed{prefix: buf, rest: rest}, cl)
	return nil, false
}

// prefixed reads bytes already taken from a stream, then the stream.
type prefixed struct {
	prefix []byte
	rest   io.ReadCloser
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.rest.Read(b)
}

func (p *prefixed) Close() error { return p.rest.Close() }

// appendKey appends the primary cache key: host, path, sorted query, then the values of the
// route's vary headers. Parts are separated by bytes that cannot occur in them.
func (m *middleware) appendKey(dst []byte, x *proxy.Exchange) []byte {
	dst = appendHost(dst, x.Ctx.Request.Header.Host())
	dst = append(dst, 0)
	dst = append(dst, x.Path...)
	dst = append(dst, 0)
	dst = appendSortedQuery(dst, x.Query)
	for _, name := range m.vary {
		dst = append(dst, 0)
		dst = append(dst, bytes.TrimSpace(x.Ctx.Request.Header.PeekBytes(name))...)
	}
	return dst
}

func appendVary(dst []byte, req *fasthttp.RequestHeader, names []string) []byte {
	for _, name := range names {
		dst = append(dst, 1)
		dst = append(dst, name...)
		dst = append(dst, ':')
		dst = append(dst, bytes.TrimSpace(req.Peek(name))...)
	}
	return dst
}

// appendHost appends host lowercased, without a trailing dot or the default port.
func appendHost(dst, host []byte) []byte {
	host = bytes.TrimSuffix(host, []byte(":80"))
	host = bytes.TrimSuffix(host, []byte("."))
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// maxSortedParams bounds the parameters sorted in place; a longer query keeps its order.
const maxSortedParams = 32

// appendSortedQuery appends the query's parameters sorted bytewise, so ?a=1&b=2 and ?b=2&a=1
// share an entry. Empty parameters are dropped.
func appendSortedQuery(dst, q []byte) []byte {
	var params [maxSortedParams][]byte
	n := 0
	for len(q) > 0 {
		var p []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			p, q = q[:i], q[i+1:]
		} else {
			p, q = q, nil
		}
		if len(p) == 0 {
			continue
		}
		if n == maxSortedParams {
			return append(dst, q...)
		}
		params[n] = p
		n++
	}
	// Insertion sort: few parameters, no allocation.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && bytes.Compare(params[j], params[j-1]) < 0; j-- {
			params[j], params[j-1] = params[j-1], params[j]
		}
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, params[i]...)
	}
	return dst
}

// refresh starts one background request that replaces a stale entry. The request copies the
// client's, without conditions, so the response varies the same way.
func (m *middleware) refresh(x *proxy.Exchange, e *Entry, key []byte) {
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	reg := m.rc.reg
	if !reg.startRefresh() {
		return
	}
	req := fasthttp.AcquireRequest()
	x.Ctx.Request.Header.CopyTo(&req.Header)
	req.Header.SetMethod(fasthttp.MethodGet)
	for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range",
		"Connection", "Keep-Alive", "Te", "Upgrade", "Transfer-Encoding", "Proxy-Connection", "Content-Length"} {
		req.Header.Del(h)
	}
	bx := &proxy.Exchange{
		Snapshot: x.Snapshot, Route: x.Route, Method: methodGet,
		Path: append([]byte(nil), x.Path...), Query: append([]byte(nil), x.Query...),
		ClientIP: x.ClientIP, Peer: x.Peer, RequestID: append([]byte(nil), x.RequestID...),
	}
	primary := primaryKeyOf(append([]byte(nil), key...))
	go func() {
		defer reg.refreshDone()
		defer fasthttp.ReleaseRequest(req)
		defer e.refreshing.Store(false)
		ctx := &fasthttp.RequestCtx{}
		ctx.Init(req, &net.TCPAddr{IP: bx.ClientIP.AsSlice()}, nil)
		bx.Ctx = ctx
		m.rc.refreshes.Add(1)
		m.next.Serve(bx)
		m.capture(bx, primary, time.Now().UnixNano())
		ctx.Response.Reset()
	}()
}

// primaryKeyOf strips the variant part of a variant's key.
func primaryKeyOf(key []byte) []byte {
	if i := bytes.IndexByte(key, 1); i >= 0 {
		return key[:i]
	}
	return key
}

// flights collapses concurrent misses for one key.
type flights struct {
	mu sync.Mutex
	m  map[uint64]*flight
}

type flight struct{ done chan struct{} }

func (g *flights) join(h uint64) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.m[h]; f != nil {
		return f, false
	}
	if g.m == nil {
		g.m = map[uint64]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	g.m[h] = f
	return f, true
}

func (g *flights) finish(h uint64, f *flight) {
	g.mu.Lock()
	delete(g.m, h)
	g.mu.Unlock()
	close(f.done)
}
