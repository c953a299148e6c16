package cache

import "github.com/valyala/fasthttp"

// A field sent on several lines means the comma-join of all of them (RFC 9110 §5.3), and
// fasthttp's Peek returns only the first: "Cache-Control: max-age=3600" followed by
// "Cache-Control: s-maxage=1" must read as both. These helpers visit every line.

// appendRequestField appends every line of the request field name to dst, joined by ", ", and
// returns the lines it found. Visiting the header allocates nothing, so the hit path can use it.
func appendRequestField(dst []byte, req *fasthttp.RequestHeader, name string) ([]byte, int) {
	n := 0
	for k, v := range req.All() {
		if fieldIs(k, name) {
			if n > 0 {
				dst = append(dst, ", "...)
			}
			dst = append(dst, v...)
			n++
		}
	}
	return dst, n
}

// field returns every line of name in hdrs joined by ", ", and how many lines there were.
func field(hdrs []KV, name string) ([]byte, int) {
	var out []byte
	n := 0
	for _, kv := range hdrs {
		if fieldIs(kv.Key, name) {
			if n > 0 {
				out = append(out, ", "...)
			}
			out = append(out, kv.Value...)
			n++
		}
	}
	return out, n
}

// responseHeaders copies every line of a response header, Set-Cookie included.
func responseHeaders(rh *fasthttp.ResponseHeader) []KV {
	var hdrs []KV
	for k, v := range rh.All() {
		hdrs = append(hdrs, KV{append([]byte(nil), k...), append([]byte(nil), v...)})
	}
	return hdrs
}

// fieldIs compares a field name with name, ignoring ASCII case in both.
func fieldIs(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
