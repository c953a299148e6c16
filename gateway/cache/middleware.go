// Package cache is the per-route response cache: an RFC 9111 shared cache in front of a route's
// upstream, in memory within a byte budget, optionally backed by a tier in Redis that every
// replica shares.
//
// What is stored: responses to GET requests without a body, Authorization or Cookie (unless the
// route sets cache.authorized), without Range, whose cache fields allow a shared cache to store
// them (Archway-Cache-Control, else CDN-Cache-Control, else Cache-Control and Expires; every line
// of each read), without Set-Cookie (unless cache.set_cookie, and then replayed), with a Vary
// other than "*", and whose body fits cache.max_entry_bytes. Freshness is s-maxage, else
// max-age, else Expires, else the route's ttl for statuses that may be cached heuristically.
// Stale entries with validators are revalidated with conditional requests; unsafe requests that
// succeed invalidate what they may have changed. Bodies the upstream sends buffered are copied; streamed bodies
// (over 64 KiB, or chunked) are read into memory when they fit max_entry_bytes and then served
// from memory, and otherwise stream through untouched with the part already read in front.
package cache

import (
	"bytes"
	"io"
	"net"
	"net/textproto"
	"net/url"
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
	methodGet     = protocol.MethodGet
	methodHead    = protocol.MethodHead
	methodOptions = protocol.MethodOptions
)

var (
	hAge       = []byte("Age")
	hXCache    = []byte("X-Cache")
	hCookie    = []byte("Cookie")
	hINM       = []byte("If-None-Match")
	hIMS       = []byte("If-Modified-Since")
	hGatewayCC = []byte(GatewayCacheControl)

	vHit         = []byte("HIT")
	vMiss        = []byte("MISS")
	vStale       = []byte("STALE")
	vBypass      = []byte("BYPASS")
	vRevalidated = []byte("REVALIDATED")
)

// GatewayCacheControl is the response field that directs this gateway's cache alone: it wins
// over CDN-Cache-Control and Cache-Control (RFC 9213 targeted fields) and is never passed on.
const GatewayCacheControl = "Archway-Cache-Control"

// keepForRevalidation is how long a stale entry with a validator (ETag or Last-Modified) is kept
// past its freshness, so a later request can revalidate it with a conditional request instead
// of fetching the whole response again.
const keepForRevalidation = int64(time.Hour)

// notStored are response headers the cache never replays: per-connection or per-response ones,
// and those it sets itself.
var notStored = []string{
	"Age", "X-Cache", "Set-Cookie", "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length",
	"X-Request-Id", "Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", "Proxy-Authenticate", "Trailer", "Upgrade",
	GatewayCacheControl,
}

// notFreshened are the fields a 304 does not replace in the stored response (RFC 9111 §3.2):
// those describing the stored body, which the 304 does not carry.
var notFreshened = []string{"Content-Length", "Content-Type", "Content-Encoding", "Content-Range"}

// notModifiedHeaders are the stored headers a 304 carries (RFC 9110 §15.4.5).
var notModifiedHeaders = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Last-Modified"}

// middleware is one route's cache in one snapshot.
type middleware struct {
	next         proxy.Handler
	rc           *routeCache
	ttl, swr     int64 // ns
	staleIfError int64 // ns
	maxEntry     int
	vary         []string
	authorized   bool
	setCookie    bool
	tier         *redisTier // nil: memory only
}

func newMiddleware(rc *routeCache, c *config.Cache, tier *redisTier) *middleware {
	m := &middleware{
		rc: rc, ttl: int64(c.TTL), swr: int64(c.StaleWhileRevalidate), staleIfError: int64(c.StaleIfError),
		maxEntry: int(c.MaxEntryBytes), authorized: c.Authorized, setCookie: c.SetCookie, tier: tier,
	}
	for _, h := range c.Vary {
		m.vary = append(m.vary, textproto.CanonicalMIMEHeaderKey(h))
	}
	return m
}

// Serve implements proxy.Handler.
func (m *middleware) Serve(x *proxy.Exchange) {
	if x.Method != methodGet && x.Method != methodHead {
		m.next.Serve(x)
		if x.Method != methodOptions {
			m.invalidateAfter(x)
		}
		return
	}
	req := &x.Ctx.Request.Header
	// Cookie before the pass over every field, which makes fasthttp parse the cookies: peeked
	// after that, the value is rebuilt from them (an allocation).
	cookie := len(req.PeekCanonical(hCookie)) > 0
	var ccBuf [128]byte
	f := readRequestFields(req, ccBuf[:0])
	if (!m.authorized && (len(f.authorization) > 0 || cookie)) || len(f.rng) > 0 || hasBody(x) {
		m.bypass(x)
		return
	}
	rcc := parseCacheControl(f.cc)
	if rcc.noStore {
		m.bypass(x)
		return
	}
	revalidate := rcc.noCache || rcc.maxAge == 0 || (len(f.cc) == 0 && f.pragmaNoCache)

	var buf [512]byte
	key := m.appendKey(buf[:0], x)
	now := requestTime(x)
	e, full := m.lookup(x, key, now)
	if e != nil && !revalidate {
		if now < e.FreshUntil {
			m.rc.hits.Add(1)
			m.serveWith(x, e, now, vHit, f.conditions)
			return
		}
		if now < e.StaleUntil {
			m.rc.stale.Add(1)
			m.refresh(x, e, full)
			m.serveWith(x, e, now, vStale, f.conditions)
			return
		}
	}
	if x.Method == methodHead {
		// HEAD is answered from stored GET responses but never fills the cache.
		m.next.Serve(x)
		if e != nil && m.serveOnError(x, e, time.Now().UnixNano()) {
			return
		}
		m.rc.misses.Add(1)
		x.Ctx.Response.Header.SetCanonical(hXCache, vMiss)
		return
	}
	m.miss(x, key, now, e)
}

// requestTime is when the request arrived, in Unix ns: the time fasthttp read before calling
// the handler, so a hit reads no clock of its own (an exchange built without a server's
// RequestCtx, as the background refresh's is, reads the clock).
func requestTime(x *proxy.Exchange) int64 {
	if t := x.Ctx.Time(); !t.IsZero() {
		return t.UnixNano()
	}
	return time.Now().UnixNano()
}

// requestFields is what the cache reads of a request's header fields besides its key.
type requestFields struct {
	authorization, rng []byte // the first line of each, as PeekBytes would return it
	cc                 []byte // every Cache-Control line, joined by ", "
	pragmaNoCache      bool   // a Pragma line holds no-cache
	conditions
}

// conditions are a request's preconditions the cache answers (the first line of each).
type conditions struct{ inm, ims []byte }

// readRequestFields reads them in one pass over the header fields, appending Cache-Control to
// cc: a lookup by name per field (PeekBytes copies and normalises the name, then scans every
// field) cost a hit five scans. Every line is read, as the cache's other fields are (fields.go).
// The slices point into req and are valid until it changes.
func readRequestFields(req *fasthttp.RequestHeader, cc []byte) requestFields {
	f := requestFields{cc: cc}
	var auth, rng, inm, ims, ccLines bool
	for k, v := range req.All() {
		switch len(k) {
		case len("Range"):
			if !rng && fieldIs(k, "Range") {
				f.rng, rng = v, true
			}
		case len("Pragma"):
			if fieldIs(k, "Pragma") && bytes.Contains(v, noCache) {
				f.pragmaNoCache = true
			}
		case len("Cache-Control"): // Authorization, If-None-Match too
			switch {
			case fieldIs(k, "Cache-Control"):
				if ccLines {
					f.cc = append(f.cc, ", "...)
				}
				f.cc, ccLines = append(f.cc, v...), true
			case !auth && fieldIs(k, "Authorization"):
				f.authorization, auth = v, true
			case !inm && fieldIs(k, "If-None-Match"):
				f.inm, inm = v, true
			}
		case len("If-Modified-Since"):
			if !ims && fieldIs(k, "If-Modified-Since") {
				f.ims, ims = v, true
			}
		}
	}
	return f
}

var noCache = []byte("no-cache")

// hasBody reports a GET or HEAD that carries a body. Its answer may depend on the body, which
// is not in the key, so storing it would poison the entry for every plain request: such
// requests bypass the cache and go upstream with their body.
func hasBody(x *proxy.Exchange) bool {
	cl := x.Ctx.Request.Header.ContentLength()
	return cl > 0 || cl == -1 || x.Facts.Has(protocol.HasTransferEncoding)
}

func (m *middleware) bypass(x *proxy.Exchange) {
	m.rc.bypass.Add(1)
	m.next.Serve(x)
	x.Ctx.Response.Header.DelBytes(hGatewayCC)
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
			e.buildHeader()
			s.Put(e)
		}
	}
	if e != nil && now >= e.KeepUntil {
		return nil
	}
	return e
}

// serve answers from e, with 304 when the request's conditions match it. The stored Date goes
// out unchanged and Age says how old the response is (RFC 9111 §4, §5.1).
func (m *middleware) serve(x *proxy.Exchange, e *Entry, now int64, how []byte) {
	req := &x.Ctx.Request.Header
	m.serveWith(x, e, now, how, conditions{inm: req.PeekBytes(hINM), ims: req.PeekBytes(hIMS)})
}

// serveWith is serve with the request's conditions already read.
func (m *middleware) serveWith(x *proxy.Exchange, e *Entry, now int64, how []byte, c conditions) {
	resp := &x.Ctx.Response
	resp.Reset()
	fromTemplate := false
	switch {
	case c.match(e):
		resp.SetStatusCode(fasthttp.StatusNotModified)
		for _, kv := range e.Header {
			if slices.Contains(notModifiedHeaders, string(kv.Key)) {
				resp.Header.AddBytesKV(kv.Key, kv.Value)
			}
		}
		resp.SkipBody = true
	case e.header != nil:
		e.header.CopyTo(&resp.Header)
		resp.SetBodyRaw(e.Body)
		fromTemplate = true
	default:
		resp.SetStatusCode(e.Status)
		for _, kv := range e.Header {
			resp.Header.AddBytesKV(kv.Key, kv.Value)
		}
		resp.SetBodyRaw(e.Body)
	}
	var num [20]byte
	resp.Header.SetCanonical(hAge, strconv.AppendInt(num[:0], e.Age(now), 10))
	if !fromTemplate || !bytes.Equal(how, vHit) { // the template says HIT already
		resp.Header.SetCanonical(hXCache, how)
	}
}

// notModified evaluates the request's If-None-Match, or else If-Modified-Since, against e.
func notModified(req *fasthttp.RequestHeader, e *Entry) bool {
	return conditions{inm: req.PeekBytes(hINM), ims: req.PeekBytes(hIMS)}.match(e)
}

// match evaluates If-None-Match, or else If-Modified-Since, against e (RFC 9110 §13.2.2).
func (c conditions) match(e *Entry) bool {
	if e.Status != fasthttp.StatusOK {
		return false
	}
	if len(c.inm) > 0 {
		return etagMatches(c.inm, e.ETag)
	}
	if len(c.ims) > 0 && e.LastMod > 0 {
		t, ok := parseHTTPDate(c.ims, time.Now().UnixNano())
		return ok && e.LastMod <= t
	}
	return false
}

// upstreamFailed reports an answer stale-if-error may replace: no response at all (refused,
// reset, timed out), or 500, 502, 503 or 504 (RFC 5861 §4).
func upstreamFailed(x *proxy.Exchange) bool {
	if x.Err != nil {
		return true
	}
	switch x.Ctx.Response.StatusCode() {
	case 500, 502, 503, 504:
		return true
	}
	return false
}

// serveOnError answers from stored when the upstream failed and stale-if-error (the response's,
// or the route's default) still covers it.
func (m *middleware) serveOnError(x *proxy.Exchange, stored *Entry, now int64) bool {
	if !upstreamFailed(x) || now >= stored.ErrorUntil {
		return false
	}
	m.rc.staleErrors.Add(1)
	m.serve(x, stored, now, vStale)
	return true
}

// miss forwards the request and stores the response when it may. stored is the entry the
// request found but could not use as it is (stale, or the client asked for revalidation): with
// a validator the request goes upstream conditional, and a 304 freshens it (RFC 9111 §4.3);
// when the upstream fails it may stand in (stale-if-error). Concurrent misses for one key wait
// for the first, which alone goes upstream.
func (m *middleware) miss(x *proxy.Exchange, key []byte, now int64, stored *Entry) {
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
		m.next.Serve(x)
		if stored != nil && m.serveOnError(x, stored, time.Now().UnixNano()) {
			return
		}
		m.rc.misses.Add(1)
		x.Ctx.Response.Header.SetCanonical(hXCache, vMiss)
		return
	}
	defer m.rc.flights.finish(h, f)

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
	conditional := stored != nil && (len(stored.ETag) > 0 || stored.LastMod > 0)
	if conditional {
		if len(stored.ETag) > 0 {
			req.SetCanonical(hINM, stored.ETag)
		}
		if lm, n := field(stored.Header, "Last-Modified"); n == 1 {
			req.SetCanonical(hIMS, lm)
		}
	}
	m.next.Serve(x)
	after := time.Now().UnixNano()
	if conditional {
		req.DelBytes(hINM)
		req.DelBytes(hIMS)
	}
	if inm != nil {
		req.SetBytesKV(hINM, inm)
	}
	if ims != nil {
		req.SetBytesKV(hIMS, ims)
	}
	if stored != nil && m.serveOnError(x, stored, after) {
		return
	}
	var e *Entry
	how := vMiss
	if conditional && x.Err == nil && x.Ctx.Response.StatusCode() == fasthttp.StatusNotModified {
		if e = m.freshen(x, stored, key, after); e == nil {
			// The 304 forbids storing (no-store, private): serve the body we hold this once.
			e = stored
		}
		m.rc.revalidated.Add(1)
		m.serve(x, e, after, vRevalidated)
		return
	}
	m.rc.misses.Add(1)
	e = m.capture(x, key, now)
	if e != nil && (inm != nil || ims != nil) && notModified(req, e) {
		m.serve(x, e, time.Now().UnixNano(), how)
		return
	}
	x.Ctx.Response.Header.SetCanonical(hXCache, how)
}

// freshen applies a 304 from the upstream to stored (RFC 9111 §4.3.4): the 304's fields replace
// the stored ones of the same name, freshness is computed again from the result, and the
// updated entry replaces the old one. It returns nil when the result may not be stored.
func (m *middleware) freshen(x *proxy.Exchange, stored *Entry, primary []byte, now int64) *Entry {
	fresh := responseHeaders(&x.Ctx.Response.Header)
	var hdrs []KV
	for _, kv := range stored.Header {
		if !containsField(fresh, kv.Key) || slices.Contains(notFreshened, string(kv.Key)) {
			hdrs = append(hdrs, kv)
		}
	}
	for _, kv := range fresh {
		if !slices.Contains(notFreshened, string(kv.Key)) {
			hdrs = append(hdrs, kv)
		}
	}
	lt, ok := m.freshness(hdrs, stored.Status, now)
	if !ok {
		return nil
	}
	e := m.newEntry(stored.Key, stored.Path, stored.Status, hdrs, stored.Body, lt, now)
	if e == nil {
		return nil
	}
	if e.Key != string(primary) {
		// A variant: its index must live as long as it does.
		if idx := m.rc.store.Get(m.rc.store.Hash(primary), primary); idx != nil && idx.VaryNames != nil && idx.KeepUntil < e.KeepUntil {
			m.put(&Entry{Key: idx.Key, Path: idx.Path, StoredAt: now, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil,
				ErrorUntil: e.ErrorUntil, KeepUntil: e.KeepUntil, VaryNames: idx.VaryNames})
		}
	}
	m.put(e)
	return e
}

func containsField(hdrs []KV, name []byte) bool {
	for _, kv := range hdrs {
		if bytes.EqualFold(kv.Key, name) {
			return true
		}
	}
	return false
}

// lifetimes is what a response's fields say about reusing it; durations in ns.
type lifetimes struct {
	fresh, swr, staleIfError, initialAge int64
}

// freshness reads a response's cache fields, every line of each: whether a shared cache may
// store it, and for how long it is fresh, may be served stale, and stands in on errors.
// Archway-Cache-Control, else CDN-Cache-Control, when present and valid replaces Cache-Control
// and Expires (RFC 9213 §2.2).
func (m *middleware) freshness(hdrs []KV, status int, now int64) (lifetimes, bool) {
	var lt lifetimes
	targeted := false
	v, _ := field(hdrs, "Cache-Control")
	cc := parseCacheControl(v)
	for _, name := range []string{GatewayCacheControl, "Cdn-Cache-Control"} {
		if v, n := field(hdrs, name); n > 0 {
			if d, ok := parseTargeted(v); ok {
				cc, targeted = d, true
				break
			}
		}
	}
	if cc.noStore || cc.private || cc.noCache {
		return lt, false
	}
	if v, n := field(hdrs, "Age"); n > 0 {
		age, ok := parseAge(v)
		if !ok {
			return lt, false // an Age we cannot read must not make a stale response fresh
		}
		lt.initialAge = age
	}
	var lifetime int64
	expires, nExpires := field(hdrs, "Expires")
	switch {
	case cc.sMaxAge >= 0:
		lifetime = cc.sMaxAge * 1e9
	case cc.maxAge >= 0:
		lifetime = cc.maxAge * 1e9
	case nExpires > 0 && !targeted:
		// An invalid Expires, two of them included, means already expired (RFC 9111 §5.3).
		exp, ok := parseHTTPDate(expires, now)
		if !ok {
			return lt, false
		}
		base := now / 1e9
		if d, n := field(hdrs, "Date"); n == 1 {
			if ds, ok := parseHTTPDate(d, now); ok {
				base = ds
			}
		}
		lifetime = min(max(exp-base, 0), maxDelta) * 1e9
	case heuristicStatus(status):
		lifetime = m.ttl
	}
	lt.fresh = lifetime - lt.initialAge*1e9
	if lifetime <= 0 || lt.fresh <= 0 {
		return lt, false
	}
	lt.swr, lt.staleIfError = m.swr, m.staleIfError
	if cc.staleWhileRevalidate >= 0 {
		lt.swr = cc.staleWhileRevalidate * 1e9
	}
	if cc.staleIfError >= 0 {
		lt.staleIfError = cc.staleIfError * 1e9
	}
	if cc.mustRevalidate {
		lt.swr, lt.staleIfError = 0, 0
	}
	return lt, true
}

// capture stores the response in x when RFC 9111 and the route allow it, and returns the entry.
func (m *middleware) capture(x *proxy.Exchange, key []byte, now int64) *Entry {
	resp := &x.Ctx.Response
	rh := &resp.Header
	hdrs := responseHeaders(rh)
	rh.DelBytes(hGatewayCC) // meant for this cache alone
	if x.Err != nil {
		return nil
	}
	status := resp.StatusCode()
	lt, ok := m.freshness(hdrs, status, now)
	if !ok {
		return nil
	}
	if _, n := field(hdrs, "Set-Cookie"); n > 0 && !m.setCookie {
		return nil
	}
	vary, _ := field(hdrs, "Vary")
	varyNames, ok := m.extraVary(vary)
	if !ok {
		return nil
	}
	body, ok := m.body(x)
	if !ok {
		return nil
	}
	e := m.newEntry(string(key), string(x.Path), status, hdrs, body, lt, now)
	if e == nil {
		return nil
	}
	if len(varyNames) > 0 {
		index := &Entry{Key: e.Key, Path: e.Path, StoredAt: now, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil,
			ErrorUntil: e.ErrorUntil, KeepUntil: e.KeepUntil, VaryNames: varyNames}
		m.put(index)
		e.Key = string(appendVary(key, &x.Ctx.Request.Header, varyNames))
	}
	m.put(e)
	return e
}

// newEntry builds the entry for a response with fields hdrs (every line, as received).
func (m *middleware) newEntry(key, path string, status int, hdrs []KV, body []byte, lt lifetimes, now int64) *Entry {
	e := &Entry{
		Key: key, Path: path, Status: status, Body: body, StoredAt: now, InitialAge: lt.initialAge,
		FreshUntil: now + lt.fresh,
	}
	e.StaleUntil = e.FreshUntil + lt.swr
	e.ErrorUntil = e.FreshUntil + lt.staleIfError
	if _, n := field(hdrs, "Date"); n == 0 {
		// RFC 9110 §6.6.1: a recipient with a clock that caches a response without Date records
		// when it received it and adds that Date. Hits send the stored fields as they are, so
		// without it they would carry no Date at all (a miss gets the gateway's own).
		e.Header = append(e.Header, KV{Key: []byte("Date"), Value: fasthttp.AppendHTTPDate(nil, time.Unix(0, now))})
	}
	for _, kv := range hdrs {
		name := string(kv.Key) // canonical already; the compiler does not allocate for the lookup
		if slices.Contains(notStored, name) && (name != "Set-Cookie" || !m.setCookie) {
			continue
		}
		e.Header = append(e.Header, kv)
	}
	if etag, n := field(hdrs, "Etag"); n == 1 {
		e.ETag = etag
	}
	if lm, n := field(hdrs, "Last-Modified"); n == 1 {
		if t, ok := parseHTTPDate(lm, now); ok {
			e.LastMod = t
		}
	}
	e.KeepUntil = max(e.StaleUntil, e.ErrorUntil)
	if len(e.ETag) > 0 || e.LastMod > 0 {
		e.KeepUntil = max(e.KeepUntil, e.FreshUntil+keepForRevalidation)
	}
	e.buildHeader()
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
		if slices.Contains(m.vary, name) || slices.Contains(names, name) {
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

// appendKey appends the primary cache key: host, path, query sorted by name, what the upstream
// is told about the client's view of the URL, then the values of the route's vary headers.
// Parts are separated by bytes that cannot occur in them: host \0 path \0 query \0 origin
// [\0 vary value]... The first three parts name the resource (invalidation removes every entry
// under them).
func (m *middleware) appendKey(dst []byte, x *proxy.Exchange) []byte {
	req := &x.Ctx.Request.Header
	dst = appendHost(dst, req.Host())
	dst = append(dst, 0)
	dst = append(dst, x.Path...)
	dst = append(dst, 0)
	dst = appendSortedQuery(dst, x.Query)
	dst = append(dst, 0)
	dst = appendOrigin(dst, x)
	if x.Upstream != nil { // chosen by a split: each upstream's answers are entries of their own
		dst = append(dst, 3)
		dst = append(dst, x.Upstream.Name...)
	}
	for _, name := range m.vary {
		dst = append(dst, 0)
		dst, _ = appendRequestField(dst, req, name)
	}
	return dst
}

// forwardedFields are the request fields a trusted proxy's copies of pass through to the
// upstream (proxy.setForwardedHeaders), with the bit the header scan sets for each. An upstream
// may build URLs from them (Location, Link, canonical links in a body), so each is part of the
// key when it is forwarded: otherwise one request with "X-Forwarded-Host: evil" would poison
// the entry everyone gets. From an untrusted peer the gateway writes them itself, from the
// Host (already keyed) and the listener's scheme.
var forwardedFields = [...]struct {
	name string
	bit  uint32
}{
	{"X-Forwarded-Host", protocol.HasXForwardedHost},
	{"X-Forwarded-Proto", protocol.HasXForwardedProto},
	{"X-Forwarded-Port", protocol.HasXForwardedPort},
	{"X-Forwarded-Prefix", protocol.HasXForwardedPrefix},
	{"Forwarded", protocol.HasForwarded},
}

// appendOrigin appends the scheme the client used and, from a trusted proxy, every forwarded
// field it sent.
func appendOrigin(dst []byte, x *proxy.Exchange) []byte {
	if x.TLS() {
		dst = append(dst, 's')
	} else {
		dst = append(dst, 'p')
	}
	if !x.PeerTrusted {
		return dst
	}
	for i, f := range forwardedFields {
		if x.Facts.Has(f.bit) {
			dst = append(dst, 2, byte('0'+i))
			dst, _ = appendRequestField(dst, &x.Ctx.Request.Header, f.name)
		}
	}
	return dst
}

func appendVary(dst []byte, req *fasthttp.RequestHeader, names []string) []byte {
	for _, name := range names {
		dst = append(dst, 1)
		dst = append(dst, name...)
		dst = append(dst, ':')
		dst, _ = appendRequestField(dst, req, name)
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

// appendSortedQuery appends the query's parameters sorted by name, so ?a=1&b=2 and ?b=2&a=1
// share an entry. The sort is stable and compares names only: the values of a repeated name keep
// their order, because ?a=evil&a=good and ?a=good&a=evil are different requests to an upstream
// that reads the first (or the last) value. Empty parameters are dropped.
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
			// Too many to sort here: keep the order as sent.
			for i := 0; i < n; i++ {
				dst = append(dst, params[i]...)
				dst = append(dst, '&')
			}
			dst = append(dst, p...)
			if len(q) > 0 {
				dst = append(dst, '&')
				dst = append(dst, q...)
			}
			return dst
		}
		params[n] = p
		n++
	}
	// Insertion sort, stable: few parameters, no allocation.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && bytes.Compare(paramName(params[j]), paramName(params[j-1])) < 0; j-- {
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

func paramName(p []byte) []byte {
	if i := bytes.IndexByte(p, '='); i >= 0 {
		return p[:i]
	}
	return p
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

// invalidateAfter removes the stored responses an unsafe request may have changed (RFC 9111
// §4.4): when the upstream answered it with 2xx or 3xx, those for its URI and for the URIs its
// Location and Content-Location name on the same host, every variant of each.
func (m *middleware) invalidateAfter(x *proxy.Exchange) {
	if x.Err != nil {
		return
	}
	resp := &x.Ctx.Response
	if code := resp.StatusCode(); code < 200 || code >= 400 {
		return
	}
	host := appendHost(nil, x.Ctx.Request.Header.Host())
	m.invalidate(host, x.Path, x.Query)
	for _, name := range []string{"Location", "Content-Location"} {
		if v := resp.Header.Peek(name); len(v) > 0 {
			if path, query, ok := sameHostTarget(v, host, x.Path); ok {
				m.invalidate(host, path, query)
			}
		}
	}
}

func (m *middleware) invalidate(host, path, query []byte) {
	uri := append(append([]byte(nil), host...), 0)
	uri = append(uri, path...)
	uri = append(uri, 0)
	uri = appendSortedQuery(uri, query)
	m.rc.store.Invalidate(uri)
	if m.tier != nil {
		m.tier.invalidate(string(path))
	}
	m.rc.invalidations.Add(1)
}

// sameHostTarget resolves a Location or Content-Location value against the request path and
// returns its normalised path and query when it is on host; another host's entries are not
// this request's to remove (RFC 9111 §4.4).
func sameHostTarget(v, host, base []byte) ([]byte, []byte, bool) {
	ref, err := url.Parse(string(v))
	if err != nil {
		return nil, nil, false
	}
	if ref.Host != "" && !bytes.Equal(appendHost(nil, []byte(ref.Host)), host) {
		return nil, nil, false
	}
	u := (&url.URL{Path: string(base)}).ResolveReference(ref)
	path, err := protocol.NormalizePath(nil, []byte(u.EscapedPath()), false)
	if err != nil {
		return nil, nil, false
	}
	return path, []byte(u.RawQuery), true
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
