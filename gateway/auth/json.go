package auth

import (
	"errors"
	"unicode/utf8"
)

// A small JSON reader for the two objects of a JWS: it records the top-level members of an
// object as spans into the decoded bytes, so verifying a token allocates nothing. It validates
// the whole document (nested values included) and refuses what a lenient parser would let
// through and a second parser might read differently: duplicate member names, escaped member
// names, trailing data, deep nesting.

var errJSON = errors.New("malformed JSON")

type valueKind uint8

const (
	kindString valueKind = iota + 1
	kindNumber
	kindTrue
	kindFalse
	kindNull
	kindArray
	kindObject
)

// maxMembers bounds the top-level members of a token's header or payload.
const maxMembers = 48

// maxDepth bounds nesting inside claim values.
const maxDepth = 16

type member struct {
	key     []byte // raw member name (never escaped)
	val     []byte // a string's contents between the quotes; any other value's full text
	kind    valueKind
	escaped bool // a string value holding backslash escapes
}

// object is a parsed JSON object's top-level members, in order.
type object struct {
	members [maxMembers]member
	n       int
}

func (o *object) get(name string) (*member, bool) {
	for i := range o.members[:o.n] {
		if string(o.members[i].key) == name {
			return &o.members[i], true
		}
	}
	return nil, false
}

// parse reads b, which must hold exactly one JSON object.
func (o *object) parse(b []byte) error {
	o.n = 0
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errJSON
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return errJSON
			}
			end, escaped, err := scanString(b, i)
			if err != nil || escaped {
				return errJSON
			}
			key := b[i+1 : end-1]
			for j := range o.members[:o.n] {
				if string(o.members[j].key) == string(key) {
					return errJSON // a duplicate: which one would the upstream read?
				}
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return errJSON
			}
			i = skipSpace(b, i+1)
			vend, kind, vesc, err := scanValue(b, i, 0)
			if err != nil {
				return err
			}
			if o.n == maxMembers {
				return errJSON
			}
			m := &o.members[o.n]
			o.n++
			m.key, m.kind, m.escaped = key, kind, vesc
			if kind == kindString {
				m.val = b[i+1 : vend-1]
			} else {
				m.val = b[i:vend]
			}
			i = skipSpace(b, vend)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return errJSON
		}
	}
	if skipSpace(b, i) != len(b) {
		return errJSON
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanValue returns the end of the value starting at b[i] and its kind.
func scanValue(b []byte, i, depth int) (end int, kind valueKind, escaped bool, err error) {
	if i >= len(b) {
		return 0, 0, false, errJSON
	}
	switch c := b[i]; {
	case c == '"':
		end, escaped, err = scanString(b, i)
		return end, kindString, escaped, err
	case c == '{' || c == '[':
		end, err = scanContainer(b, i, depth+1)
		kind = kindObject
		if c == '[' {
			kind = kindArray
		}
		return end, kind, false, err
	case c == 't':
		return scanLiteral(b, i, "true", kindTrue)
	case c == 'f':
		return scanLiteral(b, i, "false", kindFalse)
	case c == 'n':
		return scanLiteral(b, i, "null", kindNull)
	case c == '-' || (c >= '0' && c <= '9'):
		end, err = scanNumber(b, i)
		return end, kindNumber, false, err
	}
	return 0, 0, false, errJSON
}

func scanLiteral(b []byte, i int, lit string, kind valueKind) (int, valueKind, bool, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, 0, false, errJSON
	}
	return i + len(lit), kind, false, nil
}

// scanString returns the index after the closing quote of the string starting at b[i].
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, nil
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return 0, false, errJSON
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(b) {
					return 0, false, errJSON
				}
				for _, h := range b[j+2 : j+6] {
					if _, ok := unhex(h); !ok {
						return 0, false, errJSON
					}
				}
				j += 5
			default:
				return 0, false, errJSON
			}
		case c < 0x20:
			return 0, false, errJSON
		}
	}
	return 0, false, errJSON
}

func scanNumber(b []byte, i int) (int, error) {
	j := i
	if b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return 0, errJSON
	}
	if j < len(b) && b[j] == '.' {
		j++
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			return 0, errJSON
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			return 0, errJSON
		}
	}
	return j, nil
}

// scanContainer returns the index after the object or array starting at b[i].
func scanContainer(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errJSON
	}
	open := b[i]
	closing := byte('}')
	if open == '[' {
		closing = ']'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == closing {
		return i + 1, nil
	}
	for {
		if open == '{' {
			if i >= len(b) || b[i] != '"' {
				return 0, errJSON
			}
			end, _, err := scanString(b, i)
			if err != nil {
				return 0, err
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, errJSON
			}
			i = skipSpace(b, i+1)
		}
		end, _, _, err := scanValue(b, i, depth)
		if err != nil {
			return 0, err
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == closing {
			return i + 1, nil
		}
		return 0, errJSON
	}
}

// arrayElements iterates the elements of a validated JSON array's text.
type arrayElements struct {
	b []byte
	i int
}

func (a *arrayElements) next() (val []byte, kind valueKind, escaped, ok bool) {
	if a.i == 0 {
		a.i = skipSpace(a.b, 1) // past '['
	}
	if a.i >= len(a.b) || a.b[a.i] == ']' {
		return nil, 0, false, false
	}
	end, kind, escaped, err := scanValue(a.b, a.i, 0)
	if err != nil {
		return nil, 0, false, false
	}
	val = a.b[a.i:end]
	if kind == kindString {
		val = a.b[a.i+1 : end-1]
	}
	a.i = skipSpace(a.b, end)
	if a.i < len(a.b) && a.b[a.i] == ',' {
		a.i = skipSpace(a.b, a.i+1)
	}
	return val, kind, escaped, true
}

// appendUnescaped appends the contents of a validated JSON string with escapes resolved.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(s[i+1 : i+5]))
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
				if lo := rune(hex4(s[i+3 : i+7])); lo >= 0xDC00 && lo < 0xE000 {
					r = (r-0xD800)<<10 | (lo - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, s[i])
		}
	}
	return dst
}

func hex4(b []byte) int {
	v := 0
	for _, c := range b {
		d, _ := unhex(c)
		v = v<<4 | int(d)
	}
	return v
}

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
