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
	h, ok1 := hexVal(hi)
	l, ok2 := hexVal(lo)
	return h<<4 | l, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// AppendTraceparent appends the version 00 traceparent of the ids and flags.
func AppendTraceparent(b []byte, tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags) []byte {
	b = append(b, '0', '0', '-')
	b = AppendHex(b, tid[:])
	b = append(b, '-')
	b = AppendHex(b, sid[:])
	b = append(b, '-')
	return AppendHex(b, []byte{byte(flags & trace.FlagsSampled)})
}

// AppendHex appends p in lowercase hex.
func AppendHex(b, p []byte) []byte {
	for _, c := range p {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}
