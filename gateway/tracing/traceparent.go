package tracing

import (
	"go.opentelemetry.io/otel/trace"
)

// TraceparentLen is the length of a version 00 traceparent value.
const TraceparentLen = 55

const hexDigits = "0123456789abcdef"

// ParseTraceparent reads a W3C traceparent value (Trace Context, section 3.2) without
// allocating. It accepts version 00 exactly and, as the specification asks, a later version
// whose first 55 characters parse and which continues with '-'. All-zero ids and version ff are
// invalid. Only the sampled flag is kept.
func ParseTraceparent(v []byte) (tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags, ok bool) {
	if len(v) < TraceparentLen {
		return tid, sid, 0, false
	}
	version, ok1 := hexByte(v[0], v[1])
	if !ok1 || version == 0xff || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return tid, sid, 0, false
	}
	if version == 0 && len(v) != TraceparentLen {
		return tid, sid, 0, false
	}
	if version > 0 && len(v) > TraceparentLen && v[TraceparentLen] != '-' {
		return tid, sid, 0, false
	}
	for i := range tid {
		b, ok := hexByte(v[3+2*i], v[4+2*i])
		if !ok {
			return tid, sid, 0, false
		}
		tid[i] = b
	}
	for i := range sid {
		b, ok := hexByte(v[36+2*i], v[37+2*i])
		if !ok {
			return tid, sid, 0, false
		}
		sid[i] = b
	}
	f, ok2 := hexByte(v[53], v[54])
	// Version 00 knows the sampled and random flags only; other bits make it invalid, as the
	// OpenTelemetry propagator the services use decides.
	if !ok2 || (version == 0 && f > 3) || !tid.IsValid() || !sid.IsValid() {
		return tid, sid, 0, false
	}
	return tid, sid, trace.TraceFlags(f) & trace.FlagsSampled, true
}

// hexByte decodes two lowercase hex digits; uppercase is invalid in traceparent.
func hexByte(hi, lo byte) (byte, bool) {
	h, l := unhex[hi], unhex[lo]
	return h<<4 | l, (h|l)&0xf0 == 0
}

// unhex is the value of each lowercase hex digit, 0xff for every other byte: one load per
// character instead of two range tests.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := range 16 {
		t[hexDigits[i]] = byte(i)
	}
	return t
}()

// AppendTraceparent appends the version 00 traceparent of the ids and flags (only the sampled
// flag is kept). Every character has a fixed place: the value is built in an array and
// appended at once.
func AppendTraceparent(b []byte, tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags) []byte {
	var v [TraceparentLen]byte
	v[0], v[1], v[2], v[35], v[52], v[53] = '0', '0', '-', '-', '-', '0'
	for i, c := range tid {
		v[3+2*i], v[4+2*i] = hexDigits[c>>4], hexDigits[c&0xf]
	}
	for i, c := range sid {
		v[36+2*i], v[37+2*i] = hexDigits[c>>4], hexDigits[c&0xf]
	}
	v[54] = '0' + byte(flags&trace.FlagsSampled)
	return append(b, v[:]...)
}
