package h2

import "strconv"

// The native engine encodes response heads without HPACK's dynamic table (RFC 7541): every
// field is a literal "without indexing", naming a static table entry where one exists, and no
// string is Huffman-coded. Such an encoder keeps no state, so heads of many streams can be
// encoded at once, outside the connection's lock, into buffers that are reused, and the
// peer's SETTINGS_HEADER_TABLE_SIZE never matters. The price is a few dozen bytes more per
// head than an indexing encoder, which on a connection carrying whole responses is small
// beside the body; nginx makes the same choice for most fields.

// staticStatus is the static table index of the common :status values (RFC 7541, Appendix A).
var staticStatus = map[int]byte{200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}

// staticNames is the first static table index of each field name of the table.
var staticNames = map[string]uint64{
	":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17, "accept-ranges": 18,
	"accept": 19, "access-control-allow-origin": 20, "age": 21, "allow": 22, "authorization": 23,
	"cache-control": 24, "content-disposition": 25, "content-encoding": 26, "content-language": 27,
	"content-length": 28, "content-location": 29, "content-range": 30, "content-type": 31,
	"cookie": 32, "date": 33, "etag": 34, "expect": 35, "expires": 36, "from": 37, "host": 38,
	"if-match": 39, "if-modified-since": 40, "if-none-match": 41, "if-range": 42,
	"if-unmodified-since": 43, "last-modified": 44, "link": 45, "location": 46, "max-forwards": 47,
	"proxy-authenticate": 48, "proxy-authorization": 49, "range": 50, "referer": 51, "refresh": 52,
	"retry-after": 53, "server": 54, "set-cookie": 55, "strict-transport-security": 56,
	"transfer-encoding": 57, "user-agent": 58, "vary": 59, "via": 60, "www-authenticate": 61,
}

// headEncoder appends header fields to a header block. Its scratch holds a lowercased name.
// Not safe for concurrent use; each stream has its own.
type headEncoder struct{ lower []byte }

// appendStatus appends the :status pseudo-header. The upstream transports refuse a code
// outside 100-999; should one come here anyway, the block stays valid HPACK (the field's
// length is that of its digits), so a client rejects that one response, not the connection's
// header compression state.
func appendStatus(b []byte, code int) []byte {
	if idx, ok := staticStatus[code]; ok {
		return append(b, 0x80|idx) // indexed field
	}
	b = append(b, 0x08) // literal without indexing, name :status (index 8)
	var digits [20]byte
	return appendString(b, strconv.AppendInt(digits[:0], int64(code), 10))
}

// appendField appends the field name: value, the name lowercased as HTTP/2 requires.
func (e *headEncoder) appendField(b, name, value []byte) []byte {
	lower := e.lower[:0]
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower = append(lower, c)
	}
	e.lower = lower
	if idx, ok := staticNames[string(lower)]; ok {
		b = appendInt(b, 4, 0x00, idx)
	} else {
		b = append(b, 0x00)
		b = appendString(b, lower)
	}
	return appendString(b, value)
}

// appendString appends a string literal without Huffman coding.
func appendString(b, s []byte) []byte {
	b = appendInt(b, 7, 0x00, uint64(len(s)))
	return append(b, s...)
}

// appendInt appends v as an HPACK integer with an n-bit prefix, the prefix's other bits
// being first (RFC 7541, section 5.1).
func appendInt(b []byte, n uint, first byte, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(limit))
	v -= limit
	for v >= 128 {
		b = append(b, byte(v&0x7f|0x80))
		v >>= 7
	}
	return append(b, byte(v))
}
