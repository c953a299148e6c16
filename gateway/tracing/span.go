package tracing

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/internal/exportqueue"
	"go.opentelemetry.io/otel/trace"
)

// SpanKind is a span's kind, numbered as OTLP numbers them.
type SpanKind uint8

// The kinds of the gateway's spans.
const (
	KindServer SpanKind = 2 // the request the gateway serves
	KindClient SpanKind = 3 // a request the gateway makes: an upstream attempt, a forward_auth check
)

// StatusCode is a span's status, numbered as OTLP numbers them.
type StatusCode uint8

// The span statuses.
const (
	StatusUnset StatusCode = 0
	StatusOK    StatusCode = 1
	StatusError StatusCode = 2
)

// MaxAttributes bounds a span's attributes. The gateway's largest span, a server span, sets at
// most 19; past the bound attributes are counted as dropped, as the SDK's limit would.
const MaxAttributes = 20

// maxPooledBuf is the largest text buffer a record keeps when it is released: a request
// with a huge header must not pin its copy for ever.
const maxPooledBuf = 16 << 10

type attrKind uint8

const (
	attrString attrKind = iota + 1
	attrInt
	attrBool
)

// textRange is a string of a record: bytes of its buf.
type textRange struct{ from, to uint32 }

// attr is one typed attribute of a record. The key is a constant (attribute names are
// never request data); a string value lives in the record's buf, an int or bool in num.
type attr struct {
	key  string
	kind attrKind
	text textRange
	num  int64
}

// Span is one span the gateway records: fixed shape, no interface boxing, no map, its strings
// copied into one buffer that the record keeps between uses. The request path records its
// spans in these rather than in the OpenTelemetry SDK's span objects, whose start, attributes
// and end (a snapshot under a mutex, with a map that de-duplicates attributes) were most of
// what tracing cost per request (docs/architecture.md, "Tracing").
//
// Ownership: a record belongs to one goroutine at a time. StartSpan hands it to the request
// that started the span, which alone sets its fields; End hands it to the tracer's export queue,
// and from then on the request must not touch it (not even to read its ids: copy them before).
// The queue hands it to the exporter, which encodes it and returns it to the tracer's free
// list, where the next StartSpan, on any goroutine, may take it. A record the queue refuses
// (full, or shut down) goes back to the list at once. No string or slice of a record is ever handed out, so
// nothing can see its buffer rewritten by the next user.
type Span struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	// Parent is the parent span's id, zero for a root. RemoteParent says it is another
	// process's (a trusted client's traceparent continued).
	Parent       trace.SpanID
	RemoteParent bool
	Kind         SpanKind
	// Sampled is the trace's sampled flag; the gateway records sampled spans only.
	Sampled bool
	// StartTime and EndTime are unix nanoseconds. EndTime is StartTime plus the time elapsed on
	// the monotonic clock, so a step of the wall clock during the span cannot make it negative.
	StartTime, EndTime int64
	Status             StatusCode
	// Link is the client's span context when the gateway started a new trace for a request that
	// carried one it does not continue (the OTel spec's link to the untrusted parent); zero
	// otherwise.
	LinkTraceID trace.TraceID
	LinkSpanID  trace.SpanID
	LinkSampled bool

	name, statusMessage textRange
	attrs               [MaxAttributes]attr
	nAttrs              int
	droppedAttrs        int
	buf                 []byte
	began               time.Time // StartTime with its monotonic reading
	tracer              *Tracer

	// child is the record's second span: the first span StartChild starts under this one (the
	// first upstream attempt, usually the only one) is recorded in it, so a request takes one
	// record and queues one item for its server and client spans. It is made with the record
	// and stays with it. host is the record a child belongs to (nil for a record of its own);
	// childUsed and childEnded say the child was started and ended: only an ended child is
	// exported, with its host, just before it.
	child                 *Span
	host                  *Span
	childUsed, childEnded bool

	// addr is the last address AddAddr formatted, at addrText.
	addr     netip.Addr
	addrText textRange

	// slot is the record's place in its tracer's records (1-based; 0 for a child, which is
	// never listed on its own, and for a record of a nil tracer).
	slot uint32
}

// records is a tracer's free list of span records: the only records its spans are ever
// recorded in. At most limit are made, each once, when the list is empty and fewer exist, so
// the memory spans take is bounded by the configuration, whatever the collector does: a record
// is either held by a request, waiting in the export queue (at most queue_size), in the batch
// being built (at most batch_size), or here. When none is free the span is not recorded and is
// counted as dropped for queue_full, as the queue itself counts what it cannot hold: the
// request path never allocates a record past the bound and never waits for one.
//
// The list is a stack (last released, first taken) without a lock: a request takes the record
// the exporter released last, whose bytes are still in the CPU's caches. It was a channel
// before, first in first out: once a lagging collector had made the tracer make thousands of
// records (the benchmark's queue holds 65 536), every request wrote into the one released
// longest ago, cold in memory, and paid the channel's lock twice (the take and the release).
//
// Before the channel, records came from a sync.Pool: while the collector lagged, every record
// sat in the queue, the pool was empty and each sampled request allocated new ones, up to
// queue_size of them live (docs/operations.md, "Tracing").
type records struct {
	// slots holds every record made, at its index (Span.slot - 1): written once, before the
	// record is first released, so a goroutine that finds an index on the stack reads its slot
	// after the compare-and-swap that published it.
	slots []*Span
	// top is the stack: a version in the high 32 bits (every change increments it, so a
	// compare-and-swap cannot succeed on a top that was popped and pushed back in between),
	// the top record's slot in the low 32 (0: empty). under[i] is the slot below slot i+1.
	// The links live here, not in the records: a take that lost its race may still read the
	// link of a record another goroutine is already writing.
	top   atomic.Uint64
	under []atomic.Uint32
	made  atomic.Int64
	limit int64
}

func newRecords(queueSize, batchSize int) *records {
	// The queue's own normalisation (exportqueue.New): at least one, a batch at most the queue.
	queueSize = max(1, queueSize)
	batchSize = max(1, min(batchSize, queueSize))
	limit := queueSize + batchSize
	return &records{slots: make([]*Span, limit), under: make([]atomic.Uint32, limit), limit: int64(limit)}
}

// take returns a free record, makes one while fewer than limit exist, or returns nil.
func (r *records) take() *Span {
	for {
		top := r.top.Load()
		slot := uint32(top)
		if slot == 0 {
			break
		}
		under := r.under[slot-1].Load()
		if r.top.CompareAndSwap(top, (top>>32+1)<<32|uint64(under)) {
			return r.slots[slot-1]
		}
	}
	if r.made.Load() >= r.limit {
		return nil
	}
	n := r.made.Add(1)
	if n > r.limit { // another request made the last one
		r.made.Add(-1)
		return nil
	}
	// Each n up to limit is handed out once: made only goes back down from above limit.
	s := newSpan()
	s.slot = uint32(n)
	r.slots[n-1] = s
	return s
}

// put returns s to the stack.
func (r *records) put(s *Span) {
	for {
		top := r.top.Load()
		r.under[s.slot-1].Store(uint32(top))
		if r.top.CompareAndSwap(top, (top>>32+1)<<32|uint64(s.slot)) {
			return
		}
	}
}

// newSpan makes a record and its child: a server span's text is about twice a client span's.
func newSpan() *Span {
	s := &Span{buf: make([]byte, 0, 512), child: &Span{buf: make([]byte, 0, 256)}}
	s.child.host = s
	return s
}

// StartSpan takes a record for a sampled span of kind begun at start (a time with its monotonic
// reading, as time.Now and fasthttp's request time have). The caller sets its ids, name and
// attributes and ends it with End. It returns nil when every record of the tracer is in use
// (the collector is slower than the spans come): the span is dropped and counted.
//
// On a nil Tracer it makes a record that is encoded but never ended (tests and benchmarks of
// the encoder).
func (t *Tracer) StartSpan(kind SpanKind, start time.Time) *Span {
	var s *Span
	if t == nil {
		s = newSpan()
	} else if s = t.records.take(); s == nil {
		t.CountDropped()
		return nil
	}
	s.tracer, s.Kind, s.Sampled = t, kind, true
	s.began, s.StartTime = start, start.UnixNano()
	return s
}

// CountDropped counts a span that was not recorded because no record was free (StartSpan
// returned nil), under queue_full: the request path calls it for a span it could not start
// because its parent's record was unavailable.
func (t *Tracer) CountDropped() { t.counts.AddDropped(exportqueue.DropQueueFull, 1) }

// StartChild starts a span of kind begun at start under s (its ids are the caller's to set):
// in s's own record the first time, so the two travel as one queue item, and in a record of
// its own after that (nil when none is free, counted as dropped). The child is ended with End
// before s is; s must not be ended while a child in its record is open.
func (s *Span) StartChild(kind SpanKind, start time.Time) *Span {
	c := s.child
	if c == nil || s.childUsed {
		return s.tracer.StartSpan(kind, start)
	}
	s.childUsed = true
	c.tracer, c.Kind, c.Sampled = s.tracer, kind, true
	c.began, c.StartTime = start, start.UnixNano()
	return c
}

// End stamps the span's end and hands it to its tracer's export queue: the record is no longer
// the caller's (see Span). A child in its host's record stays there, to be exported with the
// host when that ends.
func (s *Span) End() { s.EndAfter(time.Since(s.began)) }

// EndAfter is End for a span that lasted d from its start, measured by the caller on the
// monotonic clock: the request path has read the clock for its own figures already (the
// request's duration, the upstream attempt's), so the span does not read it again.
func (s *Span) EndAfter(d time.Duration) {
	s.EndTime = s.StartTime + int64(d)
	if h := s.host; h != nil {
		h.childEnded = true
		return
	}
	t := s.tracer
	if !t.queue.Add(s) { // refused and counted: the queue is full or shut down
		s.release()
	}
}

// Began is the span's start, with its monotonic reading.
func (s *Span) Began() time.Time { return s.began }

// spans is how many spans the record carries to the exporter: itself and an ended child.
func (s *Span) spans() uint64 {
	if s.childEnded {
		return 2
	}
	return 1
}

// release resets s (and its child) and returns it to its tracer's free list.
func (s *Span) release() {
	t := s.tracer
	if c := s.child; c != nil {
		c.reset()
		c.host = s
	}
	s.reset()
	if t == nil || s.slot == 0 {
		return
	}
	t.records.put(s)
}

// reset clears s for its next use, keeping its text buffer (unless a huge request grew it), its
// child and its slot.
func (s *Span) reset() {
	buf := s.buf[:0]
	if cap(buf) > maxPooledBuf {
		buf = nil
	}
	*s = Span{buf: buf, child: s.child, slot: s.slot}
}

// SetName names the span: method, then route after a space when there is one (the HTTP
// semantic conventions' "{method} {target}").
func (s *Span) SetName(method, route string) {
	from := len(s.buf)
	s.buf = append(s.buf, method...)
	if route != "" {
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, route...)
	}
	s.name = s.rangeFrom(from)
}

// SetNameBytes gives the span the name in name (copied).
func (s *Span) SetNameBytes(name []byte) {
	from := len(s.buf)
	s.buf = append(s.buf, name...)
	s.name = s.rangeFrom(from)
}

// SetStatus sets the span's status and its message (kept for StatusError only, as OTLP says).
func (s *Span) SetStatus(code StatusCode, msg string) {
	s.Status = code
	if code != StatusError {
		msg = ""
	}
	from := len(s.buf)
	s.buf = append(s.buf, msg...)
	s.statusMessage = s.rangeFrom(from)
}

// AddString adds a string attribute; v is copied.
func (s *Span) AddString(key, v string) {
	if a := s.add(key, attrString); a != nil {
		from := len(s.buf)
		s.buf = append(s.buf, v...)
		a.text = s.rangeFrom(from)
	}
}

// AddBytes adds a string attribute from bytes; v is copied.
func (s *Span) AddBytes(key string, v []byte) {
	if a := s.add(key, attrString); a != nil {
		from := len(s.buf)
		s.buf = append(s.buf, v...)
		a.text = s.rangeFrom(from)
	}
}

// AddAddr adds an address as a string attribute. The same address added again (the client's
// and the peer's address are one without a proxy in front) shares the text of the first: it is
// formatted and copied once.
func (s *Span) AddAddr(key string, ip netip.Addr) {
	if a := s.add(key, attrString); a != nil {
		if s.addrText != (textRange{}) && ip == s.addr {
			a.text = s.addrText
			return
		}
		from := len(s.buf)
		s.buf = ip.AppendTo(s.buf)
		a.text = s.rangeFrom(from)
		s.addr, s.addrText = ip, a.text
	}
}

// AddInt adds an int attribute.
func (s *Span) AddInt(key string, v int64) {
	if a := s.add(key, attrInt); a != nil {
		a.num = v
	}
}

// AddBool adds a bool attribute.
func (s *Span) AddBool(key string, v bool) {
	if a := s.add(key, attrBool); a != nil {
		a.num = 0
		if v {
			a.num = 1
		}
	}
}

func (s *Span) add(key string, kind attrKind) *attr {
	if s.nAttrs == len(s.attrs) {
		s.droppedAttrs++
		return nil
	}
	a := &s.attrs[s.nAttrs]
	s.nAttrs++
	*a = attr{key: key, kind: kind}
	return a
}

func (s *Span) rangeFrom(from int) textRange {
	return textRange{from: uint32(from), to: uint32(len(s.buf))}
}

func (s *Span) text(r textRange) []byte { return s.buf[r.from:r.to] }
