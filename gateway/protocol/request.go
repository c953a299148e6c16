package protocol

import "errors"

// Method classes.
const (
	MethodStandard = iota // forwarded
	MethodRefused         // TRACE and CONNECT: understood but never forwarded (405)
	MethodUnknown         // not a token (501)
	// MethodExtension: any other token (M-SEARCH, PROPFIND, ...). It has no index (-1), so it
	// matches only routes that allow every method, and is forwarded there (RFC 9110, section
	// 16.1: an intermediary forwards methods it does not know).
	MethodExtension
)

// Methods the gateway forwards, indexed by the Method constants (metrics, route method masks
// and the exchange's Method use these numbers). MethodIndex(m) < 0 for others. config keeps
// the same names in config.StandardMethods (it is a leaf); a test in gateway/server holds the
// two equal.
var Methods = [...]string{
	MethodGet:     "GET",
	MethodHead:    "HEAD",
	MethodPost:    "POST",
	MethodPut:     "PUT",
	MethodDelete:  "DELETE",
	MethodPatch:   "PATCH",
	MethodOptions: "OPTIONS",
}

// Indexes of the forwarded methods in Methods.
const (
	MethodGet = iota
	MethodHead
	MethodPost
	MethodPut
	MethodDelete
	MethodPatch
	MethodOptions
)

// MethodIndex returns the index of m in Methods, or -1.
func MethodIndex(m []byte) int {
	switch len(m) {
	case 3:
		if string(m) == "GET" {
			return MethodGet
		}
		if string(m) == "PUT" {
			return MethodPut
		}
	case 4:
		if string(m) == "HEAD" {
			return MethodHead
		}
		if string(m) == "POST" {
			return MethodPost
		}
	case 5:
		if string(m) == "PATCH" {
			return MethodPatch
		}
	case 6:
		if string(m) == "DELETE" {
			return MethodDelete
		}
	case 7:
		if string(m) == "OPTIONS" {
			return MethodOptions
		}
	}
	return -1
}

// ClassifyMethod tells whether a method is forwarded, refused, an extension or not a method.
// Methods are case-sensitive (RFC 9110, section 9.1): "get" is an extension, not GET.
func ClassifyMethod(m []byte) int {
	if MethodIndex(m) >= 0 {
		return MethodStandard
	}
	if string(m) == "TRACE" || string(m) == "CONNECT" {
		return MethodRefused
	}
	if len(m) == 0 {
		return MethodUnknown
	}
	for _, c := range m {
		if !isTokenChar(c) {
			return MethodUnknown
		}
	}
	return MethodExtension
}

// IsIdempotent reports whether a request with method index i may be repeated safely
// (RFC 9110, section 9.2.2).
func IsIdempotent(i int) bool {
	switch i {
	case MethodGet, MethodHead, MethodPut, MethodDelete, MethodOptions:
		return true
	}
	return false
}

// SplitTarget splits an origin-form request target into its path and its query (without '?').
// It returns ErrPathNotOrigin for the absolute form ("http://host/x"), the authority form
// ("host:443") and the asterisk form ("*"): the gateway only serves origin-form targets.
func SplitTarget(target []byte) (path, query []byte, err error) {
	if len(target) == 0 || target[0] != '/' {
		return nil, nil, ErrPathNotOrigin
	}
	for i, c := range target {
		if c == '?' {
			return target[:i], target[i+1:], nil
		}
		if c == '#' {
			return nil, nil, ErrPathBadChar
		}
	}
	return target, nil, nil
}

// Errors for request lines the gateway refuses.
var (
	// ErrVersion: a request version other than HTTP/1.0 and HTTP/1.1 (505). The gateway speaks
	// HTTP/1.1 and forwards every request as HTTP/1.1 (RFC 9110, section 6.2), so it cannot
	// promise a higher version's semantics to the client or pass it on to an upstream.
	ErrVersion = errors.New("HTTP version not supported")
	// ErrAuthorityMismatch: an absolute-form target whose authority is not the Host field.
	ErrAuthorityMismatch = errors.New("request target authority differs from Host")
)

// Request versions.
const (
	Version11 = iota
	Version10
	VersionUnsupported
)

// ClassifyVersion classifies the protocol of a request line ("HTTP/1.1").
func ClassifyVersion(proto []byte) int {
	switch string(proto) {
	case "HTTP/1.1":
		return Version11
	case "HTTP/1.0":
		return Version10
	}
	return VersionUnsupported
}

// SplitAbsoluteTarget splits an absolute-form request target ("http://host:8080/p?q") into its
// authority, path and query. A target without a path has path "/" (RFC 9112, section 3.2.2);
// the scheme must be http or https. The caller routes the request by the authority, as if it
// were origin-form with that Host.
func SplitAbsoluteTarget(target []byte) (authority, path, query []byte, err error) {
	var rest []byte
	switch {
	case len(target) > 7 && equalFold(target[:7], "http://"):
		rest = target[7:]
	case len(target) > 8 && equalFold(target[:8], "https://"):
		rest = target[8:]
	default:
		return nil, nil, nil, ErrPathNotOrigin
	}
	end := 0
	for end < len(rest) && rest[end] != '/' && rest[end] != '?' && rest[end] != '#' {
		if rest[end] == '@' {
			return nil, nil, nil, ErrHostUserinfo
		}
		end++
	}
	if end == 0 {
		return nil, nil, nil, ErrPathNotOrigin
	}
	authority, rest = rest[:end], rest[end:]
	if len(rest) == 0 {
		return authority, rootPath, nil, nil
	}
	if rest[0] == '?' {
		return authority, rootPath, rest[1:], nil
	}
	if path, query, err = SplitTarget(rest); err != nil {
		return nil, nil, nil, err
	}
	return authority, path, query, nil
}

var rootPath = []byte("/")
