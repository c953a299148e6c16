package cache

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Entry is one stored response, immutable once stored (but for its refresh flag): the body is
// handed to fasthttp without copying, so nothing may write to it.
type Entry struct {
	Key    string // the full cache key
	Path   string // the normalised request path, for purges by prefix
	Status int
	Header []KV // response headers to replay, canonical names
	Body   []byte

	StoredAt   int64 // Unix ns the response was received
	InitialAge int64 // seconds: the upstream's Age header
	FreshUntil int64 // Unix ns
	StaleUntil int64 // Unix ns: FreshUntil + stale-while-revalidate, when serving stale is allowed
	ErrorUntil int64 // Unix ns: FreshUntil + stale-if-error, when it may stand in for a failed upstream
	KeepUntil  int64 // Unix ns: when it is dropped; later than the above when it has validators
	ETag       []byte
	LastMod    int64 // Unix seconds of Last-Modified, 0 when absent

	// VaryNames marks a variant index: the upstream varies on these request headers beyond
	// the route's vary list, and the response lives under the key extended with their values.
	VaryNames []string

	refreshing atomic.Bool
	// header is the stored response header, built once, copied into each hit's response. It is
	// derived from the fields above and never encoded.
	header *fasthttp.ResponseHeader
}

// KV is a header.
type KV struct{ Key, Value []byte }

// Size is what the entry costs against the budget.
func (e *Entry) Size() int64 {
	n := int64(entryOverhead + len(e.Key) + len(e.Path) + len(e.Body) + len(e.ETag))
	for _, kv := range e.Header {
		// Twice: the fields, and the parsed header every hit copies (buildHeader).
		n += int64(2*(len(kv.Key)+len(kv.Value)) + 64)
	}
	for _, v := range e.VaryNames {
		n += int64(len(v) + 16)
	}
	return n
}

// Age is the entry's age at now, in whole seconds.
func (e *Entry) Age(now int64) int64 {
	return e.InitialAge + max(now-e.StoredAt, 0)/1e9
}

// encodingVersion 2 added ErrorUntil and KeepUntil; a version-1 entry in Redis is a miss.
const encodingVersion = 2

// MarshalBinary encodes the entry for the shared Redis tier.
func (e *Entry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(e.Key)+len(e.Path)+len(e.Body)+64*len(e.Header))
	b = append(b, encodingVersion)
	for _, v := range []int64{int64(e.Status), e.StoredAt, e.InitialAge, e.FreshUntil, e.StaleUntil, e.LastMod, e.ErrorUntil, e.KeepUntil} {
		b = binary.AppendVarint(b, v)
	}
	str := func(s []byte) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	str([]byte(e.Key))
	str([]byte(e.Path))
	str(e.ETag)
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for _, kv := range e.Header {
		str(kv.Key)
		str(kv.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(e.VaryNames)))
	for _, v := range e.VaryNames {
		str([]byte(v))
	}
	str(e.Body)
	return b, nil
}

var errBadEntry = errors.New("cache: malformed stored entry")

// UnmarshalBinary decodes what MarshalBinary wrote.
func (e *Entry) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != encodingVersion {
		return errBadEntry
	}
	b = b[1:]
	var bad bool
	varint := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	uvarint := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	bytes := func() []byte {
		n := uvarint()
		if bad || n > uint64(len(b)) {
			bad = true
			return nil
		}
		v := b[:n:n]
		b = b[n:]
		return v
	}
	e.Status = int(varint())
	e.StoredAt, e.InitialAge, e.FreshUntil, e.StaleUntil, e.LastMod = varint(), varint(), varint(), varint(), varint()
	e.ErrorUntil, e.KeepUntil = varint(), varint()
	e.Key, e.Path, e.ETag = string(bytes()), string(bytes()), bytes()
	nh := uvarint()
	if nh > 1024 {
		return errBadEntry
	}
	for i := uint64(0); i < nh && !bad; i++ {
		kv := KV{bytes(), bytes()}
		// The bytes come from a Redis every replica writes to: a field that could not have come
		// from a parsed response (CR or LF in it, a name that is not a token) would let whoever
		// writes there add lines to what hits replay.
		if !validFieldName(kv.Key) || !validFieldValue(kv.Value) {
			return errBadEntry
		}
		e.Header = append(e.Header, kv)
	}
	nv := uvarint()
	if nv > 64 {
		return errBadEntry
	}
	for i := uint64(0); i < nv && !bad; i++ {
		e.VaryNames = append(e.VaryNames, string(bytes()))
	}
	e.Body = bytes()
	if bad || len(b) != 0 {
		return errBadEntry
	}
	if e.VaryNames == nil && (e.Status < 100 || e.Status > 999) {
		return errBadEntry // only a variant index has no status
	}
	return nil
}

// validFieldName reports whether b is a non-empty token (RFC 9110 §5.1).
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytesContain(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether b holds no CR, LF or NUL.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func bytesContain(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// buildHeader prepares the response header every hit copies: the stored fields, Date included,
// then Age and X-Cache: HIT, parsed once into a header that fasthttp's server writes as it is.
// A hit replaces Age's value in place (and X-Cache's when it is not a fresh hit), so the fields
// go out in the order they always did, and a fresh hit sets one field instead of two.
// A hit must send the stored Date (RFC 9110 §6.6.1, RFC 9111 §4), but the server writes its own
// clock unless the response's header carries the flag Server.NoDefaultDate sets, and it ignores
// a Date set on a response. Both come from dateKeeping: a parsed header keeps its Date line,
// and CopyTo carries the flag. Without the template (a header fasthttp cannot parse) hits fall
// back to adding the fields one by one, with the gateway's Date.
func (e *Entry) buildHeader() {
	if e.VaryNames != nil {
		return // an index: never served
	}
	raw := make([]byte, 0, 96+len(e.Header)*48)
	raw = append(raw, "HTTP/1.1 "...)
	raw = strconv.AppendInt(raw, int64(e.Status), 10)
	raw = append(raw, ' ')
	raw = append(raw, fasthttp.StatusMessage(e.Status)...)
	raw = append(raw, "\r\n"...)
	for _, kv := range e.Header {
		raw = append(raw, kv.Key...)
		raw = append(raw, ": "...)
		raw = append(raw, kv.Value...)
		raw = append(raw, "\r\n"...)
	}
	raw = append(raw, "Age: 0\r\nX-Cache: HIT\r\n\r\n"...)
	h := &fasthttp.ResponseHeader{}
	dateKeeping().CopyTo(h)
	if err := h.Read(bufio.NewReaderSize(bytes.NewReader(raw), len(raw)+16)); err != nil {
		return
	}
	// A parsed head without Content-Length (the stored fields have none: the hit sets the body)
	// reads as a body delimited by close; a hit must keep the client's connection open.
	h.ResetConnectionClose()
	// The reason phrase parsed is the standard one (written above): without it, fasthttp writes
	// the status line from its table instead of formatting it for every hit.
	h.SetStatusMessage(nil)
	e.header = h
}

// dateKeeping returns an empty response header with fasthttp's "no default Date" flag set. Only
// a server sets that flag (from Server.NoDefaultDate, on the response of each request it
// reads), so a server configured so answers one request over an in-memory pipe and its
// response header is copied out. TestCacheHitKeepsStoredDate fails if fasthttp stops carrying
// the flag through CopyTo.
var dateKeeping = sync.OnceValue(func() *fasthttp.ResponseHeader {
	h := &fasthttp.ResponseHeader{}
	srv := &fasthttp.Server{NoDefaultDate: true, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.CopyTo(h)
	}}
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeConn(server)
	}()
	_, _ = client.Write([]byte("GET / HTTP/1.1\r\nHost: cache\r\nConnection: close\r\n\r\n"))
	_, _ = io.Copy(io.Discard, client)
	_ = client.Close()
	<-done
	return h
})
