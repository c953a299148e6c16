package tracing

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// encoder writes the OTLP ExportTraceServiceRequest of a batch of span records straight into a
// byte buffer: no protobuf message objects are built (the SDK's exporters build three per
// attribute and several more per span, then marshal them). Both transports send its bytes:
// OTLP/HTTP as the request body, OTLP/gRPC as the Export call's message (export.go).
// TestExportMatchesSDK decodes them against the SDK exporter's message for the same spans.
//
// The resource and the instrumentation scope are the tracer's, the same for every record, so
// they are encoded once.
type encoder struct {
	resource []byte // the ResourceSpans.resource field
	scope    []byte // the ScopeSpans.scope field
}

// scopeName is the instrumentation scope of the gateway's spans.
const scopeName = "github.com/archway-gateway/archway/gateway"

func newEncoder(serviceName string) encoder {
	return encoder{
		resource: appendNested(nil, fResourceSpansResource, func(b []byte) []byte {
			return appendNested(b, fResourceAttributes, func(b []byte) []byte {
				b = appendString(b, fKeyValueKey, "service.name")
				return appendNested(b, fKeyValueValue, func(b []byte) []byte {
					b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
					return protowire.AppendString(b, serviceName)
				})
			})
		}),
		scope: appendNested(nil, fScopeSpansScope, func(b []byte) []byte { return appendString(b, fScopeName, scopeName) }),
	}
}

// appendRequest appends the ExportTraceServiceRequest of spans to b: one ResourceSpans holding
// one ScopeSpans holding the spans, in order, each record's ended child just before it.
func (e *encoder) appendRequest(b []byte, spans []*Span) []byte {
	return appendNestedSized(b, fRequestResourceSpans, 3, func(b []byte) []byte {
		b = append(b, e.resource...)
		return appendNestedSized(b, fResourceSpansScopeSpans, 3, func(b []byte) []byte {
			b = append(b, e.scope...)
			for _, s := range spans {
				if s.childEnded { // it ended first: written first, as two records would be
					b = appendNestedSized(b, fScopeSpansSpans, 2, s.child.appendTo)
				}
				b = appendNestedSized(b, fScopeSpansSpans, 2, s.appendTo)
			}
			return b
		})
	})
}

// appendTo appends the fields of s's Span message, as the SDK's exporter writes them.
func (s *Span) appendTo(b []byte) []byte {
	b = appendBytes(b, fSpanTraceID, s.TraceID[:])
	b = appendBytes(b, fSpanSpanID, s.SpanID[:])
	if s.Parent.IsValid() {
		b = appendBytes(b, fSpanParentSpanID, s.Parent[:])
	}
	b = appendText(b, fSpanName, s.text(s.name))
	if s.Kind != 0 {
		b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.Kind))
	}
	b = appendFixed64(b, fSpanStart, uint64(max(0, s.StartTime)))
	b = appendFixed64(b, fSpanEnd, uint64(max(0, s.EndTime)))
	for i := range s.attrs[:s.nAttrs] {
		b = s.appendAttribute(b, &s.attrs[i])
	}
	b = appendUint(b, fSpanDroppedAttributes, s.droppedAttrs)
	if s.LinkTraceID.IsValid() {
		b = appendNested(b, fSpanLinks, func(b []byte) []byte {
			b = appendBytes(b, fLinkTraceID, s.LinkTraceID[:])
			b = appendBytes(b, fLinkSpanID, s.LinkSpanID[:])
			return appendFixed32(b, fLinkFlags, spanFlags(s.LinkSampled, true))
		})
	}
	// The SDK's exporter always writes a status, empty when unset.
	b = appendNested(b, fSpanStatus, func(b []byte) []byte {
		b = appendText(b, fStatusMessage, s.text(s.statusMessage))
		if s.Status != StatusUnset {
			b = protowire.AppendTag(b, fStatusCode, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(s.Status))
		}
		return b
	})
	return appendFixed32(b, fSpanFlags, spanFlags(s.Sampled, s.RemoteParent))
}

// appendAttribute appends a as a Span.attributes field (a KeyValue message). The sizes of
// the two messages are known before they are written, so they are written in one pass, without
// the reserve-and-move of appendNested: attributes are most of a span's fields.
func (s *Span) appendAttribute(b []byte, a *attr) []byte {
	// AnyValue: one field, a string (set even when empty: the value's oneof), an int or a bool.
	var text []byte
	var valueLen int
	switch a.kind {
	case attrBool, attrInt:
		valueLen = 1 + protowire.SizeVarint(uint64(a.num))
	default:
		text = s.text(a.text)
		valueLen = 1 + protowire.SizeBytes(len(text))
	}
	kvLen := 1 + protowire.SizeBytes(valueLen) // KeyValue.value
	if a.key != "" {
		kvLen += 1 + protowire.SizeBytes(len(a.key))
	}
	// Every field number here is below 16: each tag is one byte.
	b = protowire.AppendTag(b, fSpanAttributes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(kvLen))
	b = appendString(b, fKeyValueKey, a.key)
	b = protowire.AppendTag(b, fKeyValueValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(valueLen))
	switch a.kind {
	case attrBool:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(a.num))
	case attrInt:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(a.num))
	}
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendBytes(b, text)
}

// spanFlags are a span's or a link's OTLP flags: the W3C trace flags in the low byte, and
// whether the parent (for a link: the linked span) is remote.
func spanFlags(sampled, remote bool) uint32 {
	flags := uint32(flagHasIsRemote)
	if sampled {
		flags |= 1
	}
	if remote {
		flags |= flagIsRemote
	}
	return flags
}

// The field numbers of the OTLP messages the encoder writes (opentelemetry-proto,
// collector/trace/v1, trace/v1, common/v1, resource/v1).
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fResourceSpansResource   = 1
	fResourceSpansScopeSpans = 2

	fResourceAttributes = 1

	fScopeSpansScope = 1
	fScopeSpansSpans = 2

	fScopeName = 1

	fSpanTraceID           = 1
	fSpanSpanID            = 2
	fSpanParentSpanID      = 4
	fSpanName              = 5
	fSpanKind              = 6
	fSpanStart             = 7
	fSpanEnd               = 8
	fSpanAttributes        = 9
	fSpanDroppedAttributes = 10
	fSpanLinks             = 13
	fSpanStatus            = 15
	fSpanFlags             = 16

	fLinkTraceID = 1
	fLinkSpanID  = 2
	fLinkFlags   = 6

	fStatusMessage = 2
	fStatusCode    = 3

	fKeyValueKey   = 1
	fKeyValueValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3

	// Span.flags and Link.flags: the W3C trace flags in the low byte, and whether the parent
	// (the linked span) is remote.
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// appendNested appends field num holding the message body writes. The length goes before the
// body, so one byte is reserved for it (the common case) and the body is moved along when its
// length needs more: no second buffer, no size pass.
func appendNested(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	return appendNestedSized(b, num, 1, body)
}

// appendNestedSized is appendNested reserving width bytes for the length: a span (hundreds of
// bytes: a 2-byte length) or a whole batch (3 bytes up to 2 MiB) is then not moved along
// after it is written. A length that needs fewer bytes moves the body back, so the encoding
// stays the minimal one.
func appendNestedSized(b []byte, num protowire.Number, width int, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	for range width {
		b = append(b, 0)
	}
	b = body(b)
	n := len(b) - at - width
	switch w := protowire.SizeVarint(uint64(n)); {
	case w > width:
		for range w - width {
			b = append(b, 0)
		}
		copy(b[at+w:], b[at+width:at+width+n])
	case w < width:
		copy(b[at+w:], b[at+width:at+width+n])
		b = b[:at+w+n]
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

// appendText is appendString for a string held as bytes.
func appendText(b []byte, num protowire.Number, s []byte) []byte {
	if len(s) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, s)
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
