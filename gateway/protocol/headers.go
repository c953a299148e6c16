package protocol

import "errors"

// Errors for header blocks the gateway refuses (400, connection closed).
var (
	ErrObsFold          = errors.New("obsolete header line folding")
	ErrHeaderName       = errors.New("invalid character in header name")
	ErrHeaderUnderscore = errors.New("underscore in header name")
	ErrHeaderSyntax     = errors.New("malformed header line")
	ErrFramingConflict  = errors.New("both Content-Length and Transfer-Encoding")
	ErrTransferEncoding = errors.New("Transfer-Encoding other than chunked")
	ErrHostUserinfo     = errors.New("userinfo in Host")
	ErrTooManyHopFields = errors.New("too many hop-by-hop header fields")
	// ErrExpectation: an Expect other than 100-continue, the only expectation HTTP defines
	// (RFC 9110, section 10.1.1); answered 417.
	ErrExpectation = errors.New("expectation not supported")
)

// Present bits of HeaderFacts: which headers the request carried.
const (
	HasConnection uint32 = 1 << iota
	HasKeepAlive
	HasProxyFields // "Proxy" or any "Proxy-*" field, including Proxy-Connection
	HasTE
	HasTrailer
	HasUpgrade
	HasTransferEncoding
	HasContentLength
	HasExpect
	HasXForwardedFor
	HasXForwardedHost
	HasXForwardedProto
	HasXForwardedPort
	HasXForwardedPrefix
	HasXRealIP
	HasForwarded
	HasXRequestID
	HasExpectOther // an Expect field with anything but 100-continue (answered 417)
)

// Capacities of HeaderFacts. A request with more such fields than fit is refused: no honest
// client sends nine X-Forwarded-For lines.
const (
	MaxForwardedForFields = 8
	MaxConnectionFields   = 4
	MaxProxyFields        = 4
)

// Span is a half-open byte range [Start, End) in the raw header block that was scanned.
type Span struct{ Start, End int32 }

// Of returns the bytes of s in raw.
func (s Span) Of(raw []byte) []byte { return raw[s.Start:s.End] }

// HeaderFacts is what one pass over a raw request header block found. The zero value is ready;
// ScanHeaders resets it. It holds spans into the scanned block, so it is valid only as long as
// that block is. Not safe for concurrent use; one per request.
type HeaderFacts struct {
	Present uint32

	ForwardedFor  [MaxForwardedForFields]Span // values of X-Forwarded-For fields, in order
	NForwardedFor int
	Connection    [MaxConnectionFields]Span // values of Connection fields
	NConnection   int
	ProxyNames    [MaxProxyFields]Span // names of "Proxy" and "Proxy-*" fields
	NProxyNames   int
	RequestID     Span // value of the first X-Request-ID field
}

// Has reports whether every bit in mask is present.
func (f *HeaderFacts) Has(mask uint32) bool { return f.Present&mask == mask }

// ScanHeaders checks a raw header block (the field lines after the request line, as received,
// up to and including the empty line) and records what it carries in f. It refuses what
// fasthttp's parser tolerates but a gateway must not: obsolete line folding, '_' or other
// non-token bytes in field names, Content-Length together with Transfer-Encoding, any
// Transfer-Encoding but a single "chunked", and userinfo in Host. fasthttp itself already refuses
// duplicate or invalid Content-Length and duplicate Host.
func ScanHeaders(raw []byte, f *HeaderFacts) error {
	*f = HeaderFacts{}
	for i := 0; i < len(raw); {
		// Find the end of this line.
		end := i
		for end < len(raw) && raw[end] != '\n' {
			end++
		}
		line := raw[i:end]
		lineStart := i
		i = end + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		} else if end < len(raw) {
			return ErrBareLF // one rule for the whole head; see Conn
		}
		if len(line) == 0 {
			break // the empty line ending the block
		}
		if line[0] == ' ' || line[0] == '\t' {
			return ErrObsFold
		}
		colon := -1
		for k := 0; k < len(line); k++ {
			c := line[k]
			if c == ':' {
				colon = k
				break
			}
			if c == '_' {
				return ErrHeaderUnderscore
			}
			if !isTokenChar(c) {
				return ErrHeaderName
			}
		}
		if colon <= 0 {
			return ErrHeaderSyntax
		}
		name := line[:colon]
		vs := colon + 1
		for vs < len(line) && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		ve := len(line)
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		value := Span{int32(lineStart + vs), int32(lineStart + ve)}
		if err := f.note(raw, name, value, Span{int32(lineStart), int32(lineStart + colon)}); err != nil {
			return err
		}
	}
	if f.Has(HasContentLength) && f.Has(HasTransferEncoding) {
		return ErrFramingConflict
	}
	return nil
}

func (f *HeaderFacts) note(raw, name []byte, value, nameSpan Span) error {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			f.Present |= HasTE
		}
	case 4:
		if equalFold(name, "host") {
			for _, c := range value.Of(raw) {
				if c == '@' {
					return ErrHostUserinfo
				}
			}
		}
	case 5:
		if equalFold(name, "proxy") {
			return f.noteProxy(nameSpan)
		}
	case 6:
		if equalFold(name, "expect") {
			f.Present |= HasExpect
			if !equalFold(value.Of(raw), "100-continue") {
				f.Present |= HasExpectOther
			}
		}
	case 7:
		switch {
		case equalFold(name, "trailer"):
			f.Present |= HasTrailer
		case equalFold(name, "upgrade"):
			f.Present |= HasUpgrade
		}
	case 9:
		if equalFold(name, "forwarded") {
			f.Present |= HasForwarded
		}
	case 10:
		switch {
		case equalFold(name, "connection"):
			f.Present |= HasConnection
			if f.NConnection == MaxConnectionFields {
				return ErrTooManyHopFields
			}
			f.Connection[f.NConnection] = value
			f.NConnection++
		case equalFold(name, "keep-alive"):
			f.Present |= HasKeepAlive
		}
	}
	if len(name) > 6 && equalFold(name[:6], "proxy-") {
		return f.noteProxy(nameSpan)
	}
	if len(name) > 2 && (name[0]|0x20) == 'x' && name[1] == '-' {
		return f.noteX(name, value)
	}
	switch {
	case len(name) == 14 && equalFold(name, "content-length"):
		f.Present |= HasContentLength
	case len(name) == 17 && equalFold(name, "transfer-encoding"):
		if f.Has(HasTransferEncoding) {
			return ErrTransferEncoding // one coding, one field
		}
		f.Present |= HasTransferEncoding
		if !equalFold(value.Of(raw), "chunked") {
			return ErrTransferEncoding
		}
	}
	return nil
}

func (f *HeaderFacts) noteProxy(nameSpan Span) error {
	f.Present |= HasProxyFields
	if f.NProxyNames == MaxProxyFields {
		return ErrTooManyHopFields
	}
	f.ProxyNames[f.NProxyNames] = nameSpan
	f.NProxyNames++
	return nil
}

func (f *HeaderFacts) noteX(name []byte, value Span) error {
	switch len(name) {
	case 9:
		if equalFold(name, "x-real-ip") {
			f.Present |= HasXRealIP
		}
	case 12:
		if equalFold(name, "x-request-id") && !f.Has(HasXRequestID) {
			f.Present |= HasXRequestID
			f.RequestID = value
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			f.Present |= HasXForwardedFor
			if f.NForwardedFor == MaxForwardedForFields {
				return ErrTooManyHopFields
			}
			f.ForwardedFor[f.NForwardedFor] = value
			f.NForwardedFor++
		}
	case 16:
		switch {
		case equalFold(name, "x-forwarded-host"):
			f.Present |= HasXForwardedHost
		case equalFold(name, "x-forwarded-port"):
			f.Present |= HasXForwardedPort
		}
	case 17:
		if equalFold(name, "x-forwarded-proto") {
			f.Present |= HasXForwardedProto
		}
	case 18:
		if equalFold(name, "x-forwarded-prefix") {
			f.Present |= HasXForwardedPrefix
		}
	}
	return nil
}

// equalFold compares b with the lower-case ASCII string s, ignoring ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lower-case ASCII string s, ignoring case in b.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool { return tokenTable[c] }

// IsToken reports whether s is a non-empty RFC 9110 token (a method, a field name).
func IsToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tokenTable[s[i]] {
			return false
		}
	}
	return s != ""
}

var tokenTable = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
