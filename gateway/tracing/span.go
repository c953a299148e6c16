package tracing

import (
	"net/netip"
	"sync"
	"time"

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

// maxPooledBuf is the largest text buffer a record keeps when it goes back to the pool: a request
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
// The queue hands it to the exporter, which encodes it and returns it to the pool, where the
// next StartSpan, on any goroutine, may take it. A record the queue refuses (full, or shut
// down) goes back to the pool at once. No string or slice of a record is ever handed out, so
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
}

var spanPool = sync.Pool{New: func() any { return &Span{buf: make([]byte, 0, 512)} }}

// StartSpan takes a record from the pool for a sampled span of kind begun at start (a time with
// its monotonic reading, as time.Now and fasthttp's request time have). The caller sets its ids,
// name and attributes and ends it with End.
func (t *Tracer) StartSpan(kind SpanKind, start time.Time) *Span {
	s := spanPool.Get().(*Span)
	s.tracer, s.Kind, s.Sampled = t, kind, true
	s.began, s.StartTime = start, start.UnixNano()
	return s
}

// End stamps the span's end and hands it to its tracer's export queue: the record is no longer
// the caller's (see Span).
func (s *Span) End() {
	s.EndTime = s.StartTime + int64(time.Since(s.began))
	t := s.tracer
	if !t.queue.Add(s) { // refused and counted: the queue is full or shut down
		s.release()
	}
}

// release resets s and returns it to the pool.
func (s *Span) release() {
	buf := s.buf[:0]
	if cap(buf) > maxPooledBuf {
		buf = nil
	}
	*s = Span{buf: buf}
	spanPool.Put(s)
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

// AddAddr adds an address as a string attribute.
func (s *Span) AddAddr(key string, ip netip.Addr) {
	if a := s.add(key, attrString); a != nil {
		from := len(s.buf)
		s.buf = ip.AppendTo(s.buf)
		a.text = s.rangeFrom(from)
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
