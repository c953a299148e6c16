package accesslog

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendLine appends e as one JSON line, byte for byte what log/slog's JSON handler wrote for
// the same record (TestLineMatchesSlog holds that), without an allocation.
func appendLine(b []byte, e *Entry, now time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","request_id":`...)
	b = appendString(b, e.RequestID)
	b = append(b, `,"client_ip":`...)
	var ip [64]byte
	b = appendString(b, e.ClientIP.AppendTo(ip[:0]))
	b = append(b, `,"method":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendString(b, e.Path)
	b = append(b, `,"query":`...)
	b = appendQuery(b, e.Query)
	b = append(b, `,"route":`...)
	b = appendString(b, e.Route)
	b = append(b, `,"upstream":`...)
	b = appendString(b, e.Upstream)
	b = append(b, `,"target":`...)
	b = appendString(b, e.Target)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, e.Duration)
	b = append(b, `,"upstream_ms":`...)
	b = appendMillis(b, e.UpstreamTime)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"user_agent":`...)
	b = appendString(b, e.UserAgent)
	b = append(b, `,"referer":`...)
	b = appendString(b, e.Referer)
	b = append(b, `,"protocol":`...)
	b = appendString(b, e.Protocol)
	if e.HasGRPCStatus {
		b = append(b, `,"grpc_status":`...)
		b = strconv.AppendInt(b, int64(e.GRPCStatus), 10)
	}
	if e.Traced {
		b = append(b, `,"trace_id":"`...)
		b = appendHex(b, e.TraceID[:])
		b = append(b, `","span_id":"`...)
		b = appendHex(b, e.SpanID[:])
		b = append(b, '"')
	}
	if e.Err != nil {
		b = append(b, `,"error":`...)
		b = appendString(b, e.Err.Error())
	}
	return append(b, "}\n"...)
}

// appendHex writes p in lowercase hex, as W3C Trace Context and every trace backend spell ids.
func appendHex(b, p []byte) []byte {
	for _, c := range p {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xF])
	}
	return b
}

// appendMillis writes d in milliseconds with microsecond precision, as encoding/json formats
// the float64 slog was given.
func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

func appendString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendEscaped escapes s for a JSON string as log/slog does: quotes, backslashes and control
// characters; invalid UTF-8 becomes U+FFFD; U+2028 and U+2029 are escaped for JavaScript.
func appendEscaped[S string | []byte](b []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, '\\')
			switch c {
			case '\\', '"':
				b = append(b, c)
			case '\n':
				b = append(b, 'n')
			case '\r':
				b = append(b, 'r')
			case '\t':
				b = append(b, 't')
			default:
				b = append(b, 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// decodeRune decodes the first rune of s, which is a string or a byte slice.
func decodeRune[S string | []byte](s S) (rune, int) {
	var buf [utf8.UTFMax]byte
	n := copy(buf[:], s)
	return utf8.DecodeRune(buf[:n])
}

// sensitiveParams are query parameters whose values never reach the log: WebSocket clients
// authenticate with ?token=, and some clients put other credentials in URLs.
var sensitiveParams = [][]byte{
	[]byte("token"), []byte("access_token"), []byte("id_token"), []byte("jwt"),
	[]byte("password"), []byte("api_key"), []byte("apikey"), []byte("secret"),
}

// appendQuery writes q as a JSON string with the values of sensitive parameters replaced by
// "[redacted]".
func appendQuery(b []byte, q []byte) []byte {
	b = append(b, '"')
	for len(q) > 0 {
		part, rest, more := bytes.Cut(q, []byte("&"))
		if name, _, hasValue := bytes.Cut(part, []byte("=")); hasValue && sensitive(name) {
			b = appendEscaped(b, name)
			b = append(b, "=[redacted]"...)
		} else {
			b = appendEscaped(b, part)
		}
		if more {
			b = append(b, '&')
		}
		q = rest
	}
	return append(b, '"')
}

func sensitive(name []byte) bool {
	for _, s := range sensitiveParams {
		if bytes.EqualFold(name, s) {
			return true
		}
	}
	return false
}
