package protocol

// Method classes.
const (
	MethodStandard = iota // forwarded
	MethodRefused         // TRACE and CONNECT: understood but never forwarded (405)
	MethodUnknown         // anything else (501)
)

// Methods the gateway forwards, in the order metrics index them. MethodIndex(m) < 0 for others.
var Methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

// MethodIndex returns the index of m in Methods, or -1.
func MethodIndex(m []byte) int {
	switch len(m) {
	case 3:
		if string(m) == "GET" {
			return 0
		}
		if string(m) == "PUT" {
			return 3
		}
	case 4:
		if string(m) == "HEAD" {
			return 1
		}
		if string(m) == "POST" {
			return 2
		}
	case 5:
		if string(m) == "PATCH" {
			return 5
		}
	case 6:
		if string(m) == "DELETE" {
			return 4
		}
	case 7:
		if string(m) == "OPTIONS" {
			return 6
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
	case 0, 1, 3, 4, 6: // GET HEAD PUT DELETE OPTIONS
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
