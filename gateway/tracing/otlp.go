package tracing

import (
	"encoding/binary"
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
	// The two enclosing messages are written once per batch: a reserved length each.
	b = append(b, tagRequestResourceSpans, 0, 0, 0)
	outer := len(b)
	b = append(b, e.resource...)
	b = append(b, tagResourceSpansScopeSpans, 0, 0, 0)
	inner := len(b)
	b = append(b, e.scope...)
	for _, s := range spans {
		if s.childEnded { // it ended first: written first, as two records would be
			b = s.child.appendSpan(b)
		}
		b = s.appendSpan(b)
	}
	b = patchLength(b, inner, 3)
	return patchLength(b, outer, 3)
}

// appendSpan appends s as a ScopeSpans.spans field. A span is a few hundred bytes, so two bytes
// are reserved for its length: written in place, the body never moves unless the span is under
// 128 bytes or over 16 KiB.
func (s *Span) appendSpan(b []byte) []byte {
	b = append(b, tagScopeSpansSpans, 0, 0)
	at := len(b)
	b = s.appendTo(b)
	return patchLength(b, at, 2)
}

// patchLength writes the length of the message body that starts at body, in the width bytes
// reserved just before it, and returns b. A length that needs another width moves the body, so
// the encoding stays the minimal one (what proto.Marshal writes).
func patchLength(b []byte, body, width int) []byte {
	n := len(b) - body
	at := body - width
	switch w := protowire.SizeVarint(uint64(n)); {
	case w > width:
		b = append(b, make([]byte, w-width)...)
		copy(b[at+w:], b[body:body+n])
	case w < width:
		copy(b[at+w:], b[body:body+n])
		b = b[:at+w+n]
	}
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

// appendTo appends the fields of s's Span message, as the SDK's exporter writes them: tags are
// constants, lengths that fit one byte are written as one, the times are the record's unix
// nanoseconds as they are.
func (s *Span) appendTo(b []byte) []byte {
	b = append(b, tagSpanTraceID, 16)
	b = append(b, s.TraceID[:]...)
	b = append(b, tagSpanSpanID, 8)
	b = append(b, s.SpanID[:]...)
	if s.Parent.IsValid() {
		b = append(b, tagSpanParentSpanID, 8)
		b = append(b, s.Parent[:]...)
	}
	if name := s.text(s.name); len(name) > 0 {
		b = append(b, tagSpanName)
		b = appendLen(b, len(name))
		b = append(b, name...)
	}
	if s.Kind != 0 {
		b = append(b, tagSpanKind, byte(s.Kind)) // 2 or 3: one byte
	}
	if s.StartTime > 0 {
		b = append(b, tagSpanStart)
		b = binary.LittleEndian.AppendUint64(b, uint64(s.StartTime))
	}
	if s.EndTime > 0 {
		b = append(b, tagSpanEnd)
		b = binary.LittleEndian.AppendUint64(b, uint64(s.EndTime))
	}
	for i := range s.attrs[:s.nAttrs] {
		b = s.appendAttribute(b, &s.attrs[i])
	}
	if s.droppedAttrs > 0 {
		b = append(b, tagSpanDroppedAttributes)
		b = protowire.AppendVarint(b, uint64(min(int64(s.droppedAttrs), math.MaxUint32)))
	}
	if s.LinkTraceID.IsValid() {
		b = append(b, tagSpanLinks, linkLen, tagLinkTraceID, 16)
		b = append(b, s.LinkTraceID[:]...)
		b = append(b, tagLinkSpanID, 8)
		b = append(b, s.LinkSpanID[:]...)
		b = append(b, tagLinkFlags)
		b = binary.LittleEndian.AppendUint32(b, spanFlags(s.LinkSampled, true))
	}
	// The SDK's exporter always writes a status, empty when unset.
	msg := s.text(s.statusMessage)
	n := 0
	if len(msg) > 0 {
		n = 1 + protowire.SizeBytes(len(msg))
	}
	if s.Status != StatusUnset {
		n += 2
	}
	b = append(b, tagSpanStatus)
	b = appendLen(b, n)
	if len(msg) > 0 {
		b = append(b, tagStatusMessage)
		b = appendLen(b, len(msg))
		b = append(b, msg...)
	}
	if s.Status != StatusUnset {
		b = append(b, tagStatusCode, byte(s.Status))
	}
	b = append(b, tagSpanFlags0, tagSpanFlags1)
	return binary.LittleEndian.AppendUint32(b, spanFlags(s.Sampled, s.RemoteParent))
}

// appendAttribute appends a as a Span.attributes field (a KeyValue message holding an AnyValue).
// The sizes of both messages are known before they are written. Nearly every attribute of the
// gateway's is under 128 bytes in all, so each of its lengths is one byte: its framing is then
// written in two appends around the key and two around the value.
func (s *Span) appendAttribute(b []byte, a *attr) []byte {
	key := a.key
	switch a.kind {
	case attrBool, attrInt:
		v := uint64(a.num)
		vl := 1 + protowire.SizeVarint(v)
		if kv := 2 + len(key) + 2 + vl; kv < 0x80 && key != "" {
			b = append(b, tagSpanAttributes, byte(kv), tagKeyValueKey, byte(len(key)))
			b = append(b, key...)
			tag := byte(tagAnyInt)
			if a.kind == attrBool {
				tag = tagAnyBool
			}
			b = append(b, tagKeyValueValue, byte(vl), tag)
			if v < 0x80 {
				return append(b, byte(v))
			}
			return protowire.AppendVarint(b, v)
		}
	default:
		text := s.text(a.text)
		if kv := 2 + len(key) + 2 + 2 + len(text); kv < 0x80 && key != "" {
			b = append(b, tagSpanAttributes, byte(kv), tagKeyValueKey, byte(len(key)))
			b = append(b, key...)
			b = append(b, tagKeyValueValue, byte(2+len(text)), tagAnyString, byte(len(text)))
			return append(b, text...)
		}
	}
	return s.appendAttributeLong(b, a)
}

// appendAttributeLong is appendAttribute for any size: lengths of several bytes, or no key.
func (s *Span) appendAttributeLong(b []byte, a *attr) []byte {
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
	b = append(b, tagSpanAttributes)
	b = protowire.AppendVarint(b, uint64(kvLen))
	b = appendString(b, fKeyValueKey, a.key)
	b = append(b, tagKeyValueValue)
	b = protowire.AppendVarint(b, uint64(valueLen))
	switch a.kind {
	case attrBool:
		b = append(b, tagAnyBool)
		return protowire.AppendVarint(b, uint64(a.num))
	case attrInt:
		b = append(b, tagAnyInt)
		return protowire.AppendVarint(b, uint64(a.num))
	}
	b = append(b, tagAnyString)
	return protowire.AppendBytes(b, text)
}

// appendLen appends a length as a varint, the one-byte case inline.
func appendLen(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	return protowire.AppendVarint(b, uint64(n))
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

// The tags the encoder writes, precomputed (field number << 3 | wire type): every field number
// but Span.flags (16, two bytes) is below 16, so each is one byte.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5

	tagRequestResourceSpans    = fRequestResourceSpans<<3 | wireBytes
	tagResourceSpansScopeSpans = fResourceSpansScopeSpans<<3 | wireBytes
	tagScopeSpansSpans         = fScopeSpansSpans<<3 | wireBytes

	tagSpanTraceID           = fSpanTraceID<<3 | wireBytes
	tagSpanSpanID            = fSpanSpanID<<3 | wireBytes
	tagSpanParentSpanID      = fSpanParentSpanID<<3 | wireBytes
	tagSpanName              = fSpanName<<3 | wireBytes
	tagSpanKind              = fSpanKind<<3 | wireVarint
	tagSpanStart             = fSpanStart<<3 | wireFixed64
	tagSpanEnd               = fSpanEnd<<3 | wireFixed64
	tagSpanAttributes        = fSpanAttributes<<3 | wireBytes
	tagSpanDroppedAttributes = fSpanDroppedAttributes<<3 | wireVarint
	tagSpanLinks             = fSpanLinks<<3 | wireBytes
	tagSpanStatus            = fSpanStatus<<3 | wireBytes
	// Span.flags, field 16: its tag is the two-byte varint of 16<<3 | 5.
	tagSpanFlags0 = (fSpanFlags<<3|wireFixed32)&0x7f | 0x80
	tagSpanFlags1 = (fSpanFlags<<3 | wireFixed32) >> 7

	tagLinkTraceID = fLinkTraceID<<3 | wireBytes
	tagLinkSpanID  = fLinkSpanID<<3 | wireBytes
	tagLinkFlags   = fLinkFlags<<3 | wireFixed32
	// linkLen is a Link's size: its trace id, span id and flags, each with its tag.
	linkLen = 2 + 16 + 2 + 8 + 1 + 4

	tagStatusMessage = fStatusMessage<<3 | wireBytes
	tagStatusCode    = fStatusCode<<3 | wireVarint

	tagKeyValueKey   = fKeyValueKey<<3 | wireBytes
	tagKeyValueValue = fKeyValueValue<<3 | wireBytes

	tagAnyString = fAnyString<<3 | wireBytes
	tagAnyBool   = fAnyBool<<3 | wireVarint
	tagAnyInt    = fAnyInt<<3 | wireVarint
)

// appendNested appends field num holding the message body writes (the resource and the scope,
// encoded once per tracer). The length goes before the body: one byte is reserved for it and
// the body is moved along when its length needs more.
func appendNested(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, 0)
	at := len(b)
	return patchLength(body(b), at, 1)
}

// appendString appends a string field, or nothing for "" (proto3 leaves defaults out).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}
