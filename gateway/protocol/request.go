package protocol

// Method classes.
const (
	MethodStandard = iota // forwarded
	MethodRefused         // TRACE and CONNECT: understood but never forwarded (405)
	MethodUnknown         // anything else (501)
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

// ClassifyMethod tells whether a method is forwarded, refused or unknown. Methods are
// case-sensitive (RFC 9110, section 9.1): "get" is unknown.
func ClassifyMethod(m []byte) int {
	if MethodIndex(m) >= 0 {
		return MethodStandard
	}
	if string(m) == "TRACE" || string(m) == "CONNECT" {
		return MethodRefused
	}
	return MethodUnknown
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
