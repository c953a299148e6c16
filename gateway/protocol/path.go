// Package protocol holds the request hygiene of the public listener: path normalisation,
// request-target and method checks, and one pass over the raw header block that rejects
// smuggling-prone framing and notes which hop-by-hop and forwarding headers are present.
//
// Everything here is a pure function over bytes that allocates nothing, so it runs on every
// request and is fuzzed. The package imports no other Archway package.
package protocol

import "errors"

// Errors returned for requests the gateway refuses. Each is a 400 Bad Request except where the
// proxy's status table says otherwise.
var (
	ErrPathNotOrigin    = errors.New("request target is not an origin-form path")
	ErrPathBadEscape    = errors.New("malformed percent-encoding in path")
	ErrPathBadChar      = errors.New("character not allowed in path")
	ErrPathEncodedSlash = errors.New("encoded slash (%2F) in path")
	ErrPathEncodedNUL   = errors.New("encoded NUL (%00) in path")
)

// NormalizePath appends the normal form of the path part of an origin-form request target to dst
// and returns the extended slice. The normal form:
//
//   - percent-encodings of unreserved characters (A-Z a-z 0-9 - . _ ~) are decoded, other
//     percent-encodings keep their encoding with upper-case hex digits;
//   - "." and ".." segments are removed (RFC 3986, section 5.2.4), also when written encoded;
//     ".." never climbs above the root;
//   - repeated slashes collapse to one; a trailing slash is kept.
//
// A %2F stays encoded inside its segment, so it never separates segments for matching; with
// rejectEncodedSlash it is an error instead. Characters outside RFC 3986's pchar set, bytes over
// 0x7F, a malformed escape and %00 are errors. The one normalised path is what the gateway uses
// for matching, limit keys, cache keys and forwarding.
func NormalizePath(dst, raw []byte, rejectEncodedSlash bool) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, ErrPathNotOrigin
	}
	root := len(dst)
	out := append(dst, '/')
	for i := 1; i <= len(raw); {
		j := i
		for j < len(raw) && raw[j] != '/' {
			j++
		}
		last := j >= len(raw)
		segStart := len(out)
		var err error
		out, err = appendSegment(out, raw[i:j], rejectEncodedSlash)
		if err != nil {
			return dst, err
		}
		seg := out[segStart:]
		switch {
		case len(seg) == 0:
			// An empty segment: a repeated or trailing slash. out already ends in '/'.
		case len(seg) == 1 && seg[0] == '.':
			out = out[:segStart]
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			out = out[:segStart]
			// Drop the previous segment: out is "/a/b/" here; cut back to "/a/".
			if len(out)-root > 1 {
				k := len(out) - 2
				for k > root && out[k] != '/' {
					k--
				}
				out = out[:k+1]
			}
		default:
			if !last {
				out = append(out, '/')
			}
		}
		i = j + 1
	}
	return out, nil
}

// appendSegment appends one path segment in normal form.
func appendSegment(out, seg []byte, rejectEncodedSlash bool) ([]byte, error) {
	for k := 0; k < len(seg); k++ {
		c := seg[k]
		if c == '%' {
			if k+2 >= len(seg) {
				return out, ErrPathBadEscape
			}
			hi, ok1 := unhex(seg[k+1])
			lo, ok2 := unhex(seg[k+2])
			if !ok1 || !ok2 {
				return out, ErrPathBadEscape
			}
			v := hi<<4 | lo
			switch {
			case isUnreserved(v):
				out = append(out, v)
			case v == 0:
				return out, ErrPathEncodedNUL
			case v == '/' && rejectEncodedSlash:
				return out, ErrPathEncodedSlash
			default:
				out = append(out, '%', upperHex[v>>4], upperHex[v&0xF])
			}
			k += 2
			continue
		}
		if !isPchar(c) {
			return out, ErrPathBadChar
		}
		out = append(out, c)
	}
	return out, nil
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// charClass classifies bytes for the path grammar.
var charClass = func() (t [256]uint8) {
	const unreserved, subDelim = 1, 2
	for c := 'a'; c <= 'z'; c++ {
		t[c] = unreserved
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = unreserved
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = unreserved
	}
	for _, c := range "-._~" {
		t[c] = unreserved
	}
	for _, c := range "!$&'()*+,;=:@" {
		t[c] = subDelim
	}
	return t
}()

func isUnreserved(c byte) bool { return charClass[c] == 1 }

// isPchar reports whether c may appear literally in a path segment (RFC 3986 pchar, minus '%'
// which the caller handles).
func isPchar(c byte) bool { return charClass[c] != 0 }
