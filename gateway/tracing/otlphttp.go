package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// httpExporter sends spans to an OTLP/HTTP collector (http/protobuf). It writes the
// ExportTraceServiceRequest straight from the SDK's read-only spans into one body buffer that
// every batch reuses. The SDK's own exporter (otlptracehttp) first builds the protobuf message
// objects, three allocations per attribute and several more per span, and marshals them
// after; with every request sampled that was the larger part of tracing's cost
// (docs/benchmarks.md, "Tracing"). The bytes are the same message: TestHTTPExporterMatchesSDK
// decodes both and compares them.
//
// ExportSpans is called by one goroutine at a time (the queue's); Shutdown may come from
// another.
type httpExporter struct {
	url    string
	client *http.Client
	mu     sync.Mutex // held by ExportSpans: the body buffer is one
	body   []byte
}

var _ sdktrace.SpanExporter = (*httpExporter)(nil)

func newHTTPExporter(url string, timeout time.Duration) *httpExporter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	return &httpExporter{url: url, client: &http.Client{Transport: tr, Timeout: timeout}}
}

// retryable are the answers OTLP/HTTP says to send again (the specification's list).
func retryable(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// ExportSpans implements sdktrace.SpanExporter: one POST of the batch, sent again after a
// pause while the collector is unreachable or answers 429, 502, 503 or 504, until ctx ends.
func (e *httpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.body = appendExportRequest(e.body[:0], spans)
	wait := 100 * time.Millisecond
	for {
		err := e.post(ctx)
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("otlp export: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// permanentError is a failure that sending again cannot change: a refusal (4xx but 429), or a
// request that cannot be made.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func (e *httpExporter) post(ctx context.Context) error {
	body := &sentBody{Reader: bytes.NewReader(e.body), closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, body)
	if err != nil {
		return &permanentError{fmt.Errorf("otlp export: %w", err)}
	}
	req.ContentLength = int64(len(e.body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	// The transport may still read the body after Do returns (it closes it when done): the
	// buffer is written again only after that.
	select {
	case <-body.closed:
	case <-time.After(time.Second):
		e.body = nil // never seen closed: leave that buffer to the transport
	}
	switch {
	case err != nil:
		return fmt.Errorf("otlp export: %w", err)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case retryable(resp.StatusCode):
		return fmt.Errorf("otlp export: collector answered %d", resp.StatusCode)
	}
	return &permanentError{fmt.Errorf("otlp export: collector answered %d", resp.StatusCode)}
}

// sentBody is a request body that says when the transport closed it.
type sentBody struct {
	*bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *sentBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (e *httpExporter) Shutdown(context.Context) error {
	e.client.CloseIdleConnections()
	return nil
}

// The field numbers of the OTLP messages (opentelemetry-proto, collector/trace/v1,
// trace/v1, common/v1, resource/v1).
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fResourceSpansResource   = 1
	fResourceSpansScopeSpans = 2
	fResourceSpansSchemaURL  = 3

	fResourceAttributes = 1

	fScopeSpansScope     = 1
	fScopeSpansSpans     = 2
	fScopeSpansSchemaURL = 3

	fScopeName       = 1
	fScopeVersion    = 2
	fScopeAttributes = 3

	fSpanTraceID           = 1
	fSpanSpanID            = 2
	fSpanTraceState        = 3
	fSpanParentSpanID      = 4
	fSpanName              = 5
	fSpanKind              = 6
	fSpanStart             = 7
	fSpanEnd               = 8
	fSpanAttributes        = 9
	fSpanDroppedAttributes = 10
	fSpanEvents            = 11
	fSpanDroppedEvents     = 12
	fSpanLinks             = 13
	fSpanDroppedLinks      = 14
	fSpanStatus            = 15
	fSpanFlags             = 16

	fEventTime              = 1
	fEventName              = 2
	fEventAttributes        = 3
	fEventDroppedAttributes = 4

	fLinkTraceID           = 1
	fLinkSpanID            = 2
	fLinkTraceState        = 3
	fLinkAttributes        = 4
	fLinkDroppedAttributes = 5
	fLinkFlags             = 6

	fStatusMessage = 2
	fStatusCode    = 3

	fKeyValueKey   = 1
	fKeyValueValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5
	fAnyKVList = 6
	fAnyBytes  = 7

	fArrayValues = 1 // ArrayValue.values and KeyValueList.values

	// Span.flags: the W3C trace flags in the low byte, and whether the parent is remote.
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200

	statusOK    = 1 // Status.code
	statusError = 2
)

// appendExportRequest appends the ExportTraceServiceRequest of spans to b: one ResourceSpans per
// resource and, inside, one ScopeSpans per instrumentation scope, in the order they first
// appear.
func appendExportRequest(b []byte, spans []sdktrace.ReadOnlySpan) []byte {
	type group struct {
		res   *resource.Resource
		scope instrumentation.Scope
	}
	sameResource := func(a, b *resource.Resource) bool { return a == b || a.Equal(b) }
	var groups [4]group // the gateway has one; more only spill to the heap
	seen := groups[:0]
	for _, s := range spans {
		g := group{s.Resource(), s.InstrumentationScope()}
		if !slices.ContainsFunc(seen, func(o group) bool { return o.scope == g.scope && sameResource(o.res, g.res) }) {
			seen = append(seen, g)
		}
	}
	for i, g := range seen {
		if slices.ContainsFunc(seen[:i], func(o group) bool { return sameResource(o.res, g.res) }) {
			continue // written with the first group of its resource
		}
		b = appendNested(b, fRequestResourceSpans, func(b []byte) []byte {
			if g.res != nil {
				b = appendNested(b, fResourceSpansResource, func(b []byte) []byte {
					iter := g.res.Iter()
					for iter.Next() {
						b = appendKeyValue(b, fResourceAttributes, iter.Attribute())
					}
					return b
				})
			}
			for _, sg := range seen[i:] {
				if !sameResource(sg.res, g.res) {
					continue
				}
				b = appendNested(b, fResourceSpansScopeSpans, func(b []byte) []byte {
					if sg.scope != (instrumentation.Scope{}) {
						b = appendNested(b, fScopeSpansScope, func(b []byte) []byte {
							b = appendString(b, fScopeName, sg.scope.Name)
							b = appendString(b, fScopeVersion, sg.scope.Version)
							iter := sg.scope.Attributes.Iter()
							for iter.Next() {
								b = appendKeyValue(b, fScopeAttributes, iter.Attribute())
							}
							return b
						})
					}
					for _, s := range spans {
						if s.InstrumentationScope() == sg.scope && sameResource(s.Resource(), sg.res) {
							b = appendNested(b, fScopeSpansSpans, func(b []byte) []byte { return appendSpan(b, s) })
						}
					}
					return appendString(b, fScopeSpansSchemaURL, sg.scope.SchemaURL)
				})
			}
			return appendString(b, fResourceSpansSchemaURL, g.res.SchemaURL())
		})
	}
	return b
}

func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, fSpanTraceID, tid[:])
	b = appendBytes(b, fSpanSpanID, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, fSpanTraceState, ts.String())
	}
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, fSpanParentSpanID, psid[:])
	}
	b = appendString(b, fSpanName, s.Name())
	if k := spanKind(s.SpanKind()); k != 0 {
		b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
		b = protowire.AppendVarint(b, k)
	}
	b = appendFixed64(b, fSpanStart, unixNano(s.StartTime()))
	b = appendFixed64(b, fSpanEnd, unixNano(s.EndTime()))
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, fSpanAttributes, kv)
	}
	b = appendUint(b, fSpanDroppedAttributes, s.DroppedAttributes())
	for _, ev := range s.Events() {
		b = appendNested(b, fSpanEvents, func(b []byte) []byte {
			b = appendFixed64(b, fEventTime, unixNano(ev.Time))
			b = appendString(b, fEventName, ev.Name)
			for _, kv := range ev.Attributes {
				b = appendKeyValue(b, fEventAttributes, kv)
			}
			return appendUint(b, fEventDroppedAttributes, ev.DroppedAttributeCount)
		})
	}
	b = appendUint(b, fSpanDroppedEvents, s.DroppedEvents())
	for _, l := range s.Links() {
		b = appendNested(b, fSpanLinks, func(b []byte) []byte {
			ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
			b = appendBytes(b, fLinkTraceID, ltid[:])
			b = appendBytes(b, fLinkSpanID, lsid[:])
			if ts := l.SpanContext.TraceState(); ts.Len() > 0 {
				b = appendString(b, fLinkTraceState, ts.String())
			}
			for _, kv := range l.Attributes {
				b = appendKeyValue(b, fLinkAttributes, kv)
			}
			b = appendUint(b, fLinkDroppedAttributes, l.DroppedAttributeCount)
			return appendFixed32(b, fLinkFlags, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext.IsRemote()))
		})
	}
	b = appendUint(b, fSpanDroppedLinks, s.DroppedLinks())
	// The SDK's exporter always writes a status, empty when unset.
	st := s.Status()
	b = appendNested(b, fSpanStatus, func(b []byte) []byte {
		b = appendString(b, fStatusMessage, st.Description)
		switch st.Code {
		case codes.Ok:
			b = protowire.AppendTag(b, fStatusCode, protowire.VarintType)
			b = protowire.AppendVarint(b, statusOK)
		case codes.Error:
			b = protowire.AppendTag(b, fStatusCode, protowire.VarintType)
			b = protowire.AppendVarint(b, statusError)
		}
		return b
	})
	return appendFixed32(b, fSpanFlags, spanFlags(sc.TraceFlags(), parent.IsRemote()))
}

// spanKind maps the API's kinds to OTLP's, which number them alike; anything else is
// unspecified (0).
func spanKind(k trace.SpanKind) uint64 {
	if k >= trace.SpanKindInternal && k <= trace.SpanKindConsumer {
		return uint64(k)
	}
	return 0
}

func spanFlags(f trace.TraceFlags, remote bool) uint32 {
	flags := uint32(f) | flagHasIsRemote
	if remote {
		flags |= flagIsRemote
	}
	return flags
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) }

// appendKeyValue appends kv as a KeyValue message in field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	return appendNested(b, num, func(b []byte) []byte {
		b = appendString(b, fKeyValueKey, string(kv.Key))
		return appendNested(b, fKeyValueValue, func(b []byte) []byte { return appendAnyValue(b, kv.Value) })
	})
}

// appendAnyValue appends the fields of an AnyValue message holding v, as the SDK's exporter
// converts it.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
		return protowire.AppendString(b, v.AsString())
	case attribute.BYTESLICE:
		b = protowire.AppendTag(b, fAnyBytes, protowire.BytesType)
		return protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		return appendArray(b, len(v.AsBoolSlice()), func(b []byte, i int) []byte { return appendAnyValue(b, attribute.BoolValue(v.AsBoolSlice()[i])) })
	case attribute.INT64SLICE:
		return appendArray(b, len(v.AsInt64Slice()), func(b []byte, i int) []byte { return appendAnyValue(b, attribute.Int64Value(v.AsInt64Slice()[i])) })
	case attribute.FLOAT64SLICE:
		return appendArray(b, len(v.AsFloat64Slice()), func(b []byte, i int) []byte {
			return appendAnyValue(b, attribute.Float64Value(v.AsFloat64Slice()[i]))
		})
	case attribute.STRINGSLICE:
		return appendArray(b, len(v.AsStringSlice()), func(b []byte, i int) []byte {
			return appendAnyValue(b, attribute.StringValue(v.AsStringSlice()[i]))
		})
	case attribute.SLICE:
		vals := v.AsSlice()
		return appendArray(b, len(vals), func(b []byte, i int) []byte { return appendAnyValue(b, vals[i]) })
	case attribute.MAP:
		kvs := v.AsMap()
		return appendNested(b, fAnyKVList, func(b []byte) []byte {
			for _, kv := range kvs {
				b = appendKeyValue(b, fArrayValues, kv)
			}
			return b
		})
	case attribute.EMPTY:
		return b
	}
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendString(b, "INVALID")
}

// appendArray appends an ArrayValue field of n AnyValue messages, the ith written by value.
func appendArray(b []byte, n int, value func(b []byte, i int) []byte) []byte {
	return appendNested(b, fAnyArray, func(b []byte) []byte {
		for i := range n {
			b = appendNested(b, fArrayValues, func(b []byte) []byte { return value(b, i) })
		}
		return b
	})
}

// appendNested appends field num holding the message body writes. The length goes before the
// body, so one byte is reserved for it (the common case) and the body is moved along when its
// length needs more: no second buffer, no size pass.
func appendNested(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	if w := protowire.SizeVarint(uint64(n)); w > 1 {
		b = append(b, make([]byte, w-1)...)
		copy(b[at+w:], b[at+1:at+1+n])
	}
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

// appendString appends a string field, or nothing for "" (proto3 leaves defaults out).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

// appendUint appends a uint32 count, clamped, or nothing for 0.
func appendUint(b []byte, num protowire.Number, v int) []byte {
	if v <= 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(min(int64(v), math.MaxUint32)))
}
