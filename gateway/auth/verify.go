package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"hash"
	"math"
	"math/big"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// MaxAuthorizationBytes is the largest Authorization header the gateway reads; a longer one is
// refused before any decoding.
const MaxAuthorizationBytes = 8 << 10

// Error is a refused token. Status is 401 (the client's token is missing or not acceptable) or
// 503 (no keys could be fetched yet, so no token can be checked). The values are fixed, so
// refusing a token allocates nothing.
type Error struct {
	msg    string
	status int
	// Missing marks a request without a bearer token (401 without an error code, RFC 6750 3.1).
	Missing bool
}

func (e *Error) Error() string { return e.msg }

// Status implements proxy.StatusError.
func (e *Error) Status() (code int, closeConn bool) { return e.status, false }

func invalid(msg string) *Error {
	return &Error{msg: "invalid token: " + msg, status: fasthttp.StatusUnauthorized}
}

// Reasons a token is refused.
var (
	ErrMissingToken       = &Error{msg: "missing bearer token", status: fasthttp.StatusUnauthorized, Missing: true}
	ErrKeysUnavailable    = &Error{msg: "token signing keys are unavailable", status: fasthttp.StatusServiceUnavailable}
	ErrHeaderTooLarge     = invalid("Authorization header over 8 KiB")
	ErrDuplicateHeader    = invalid("more than one Authorization header")
	ErrMalformed          = invalid("malformed")
	ErrAlgNone            = invalid(`alg "none" is never accepted`)
	ErrAlgNotAllowed      = invalid("algorithm not allowed")
	ErrCritical           = invalid("critical header parameters are not supported")
	ErrNoKid              = invalid("no kid")
	ErrUnknownKid         = invalid("unknown kid")
	ErrKeyAlgMismatch     = invalid("the key for this kid is not for this algorithm")
	ErrBadSignature       = invalid("signature does not verify")
	ErrNoExpiry           = invalid("no exp")
	ErrExpired            = invalid("expired")
	ErrNotYetValid        = invalid("not yet valid (nbf)")
	ErrIssuedInFuture     = invalid("issued in the future (iat)")
	ErrBadTimeClaim       = invalid("exp, nbf and iat must be numbers")
	ErrWrongIssuer        = invalid("wrong issuer")
	ErrWrongAudience      = invalid("wrong audience")
	ErrUnforwardableClaim = invalid("a forwarded claim holds characters a header cannot carry")
)

// VerifierConfig configures a Verifier: exactly one of Keys and Secret.
type VerifierConfig struct {
	Keys       *KeySet
	Secret     []byte
	Algorithms []string
	Issuer     string // required iss; not checked when empty
	Audience   string // required member of aud; not checked when empty
	Leeway     time.Duration
}

// Verifier checks JWS compact tokens (RFC 7515, 7519) without allocating: signature with an
// allowed algorithm whose key type matches (an HMAC token is never checked against a public
// key), exp (required), nbf, iat, iss and aud. The jku, x5u, x5c and jwk header parameters are
// ignored: keys come only from the configuration. Immutable; safe for concurrent use.
type Verifier struct {
	keys     *KeySet
	secret   []byte
	allowed  algorithm
	issuer   string
	audience string
	leeway   float64 // seconds
	macs     sync.Pool
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if (cfg.Keys == nil) == (cfg.Secret == nil) {
		return nil, errors.New("verifier: configure exactly one of a JWKS and a secret")
	}
	mask, err := algorithmMask(cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	if cfg.Keys != nil && mask&algHS256 != 0 || cfg.Secret != nil && mask&^algHS256 != 0 {
		return nil, errors.New("verifier: HS256 goes with a secret, every other algorithm with a JWKS")
	}
	v := &Verifier{keys: cfg.Keys, allowed: mask, issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway.Seconds()}
	if cfg.Secret != nil {
		v.secret = bytes.Clone(cfg.Secret)
		v.macs.New = func() any { return hmac.New(sha256.New, v.secret) }
	}
	return v, nil
}

// Token is a verified token's claims, and the buffers verification works in. Tokens are pooled:
// AcquireToken, Verify into it, ReleaseToken. A Token and the byte slices it returns are valid
// until released; strings from Claim are copies. One goroutine owns a Token.
type Token struct {
	header  object
	claims  object
	buf     []byte // decoded header, payload and signature
	scratch []byte // unescaped claim values
	mac     [sha256.Size]byte
}

var tokenPool = sync.Pool{New: func() any {
	return &Token{buf: make([]byte, 0, MaxAuthorizationBytes), scratch: make([]byte, 0, 512)}
}}

// AcquireToken returns an empty Token from the pool.
func AcquireToken() *Token { return tokenPool.Get().(*Token) }

// ReleaseToken returns t to the pool; nothing may use t or its slices afterwards.
func ReleaseToken(t *Token) {
	t.header.n, t.claims.n = 0, 0
	t.buf, t.scratch = t.buf[:0], t.scratch[:0]
	tokenPool.Put(t)
}

// BearerToken returns the token of an "Authorization: Bearer <token>" value, or false when the
// value uses another scheme or is empty.
func BearerToken(authorization []byte) ([]byte, bool) {
	const scheme = "bearer"
	v := authorization
	if len(v) <= len(scheme) || !asciiEqualFold(v[:len(scheme)], scheme) || (v[len(scheme)] != ' ' && v[len(scheme)] != '\t') {
		return nil, false
	}
	v = bytes.Trim(v[len(scheme):], " \t")
	return v, len(v) > 0
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Verify checks the compact token and fills t with its claims. now is the time to check exp,
// nbf and iat against.
func (v *Verifier) Verify(token []byte, now time.Time, t *Token) error {
	if len(token) > MaxAuthorizationBytes {
		return ErrHeaderTooLarge
	}
	dot1 := bytes.IndexByte(token, '.')
	if dot1 < 0 {
		return ErrMalformed
	}
	dot2 := dot1 + 1 + bytes.IndexByte(token[dot1+1:], '.')
	if dot2 <= dot1 || bytes.IndexByte(token[dot2+1:], '.') >= 0 {
		return ErrMalformed
	}
	for _, c := range token {
		if !isBase64URL(c) && c != '.' {
			return ErrMalformed
		}
	}
	// Decode the three parts into one buffer: header | payload | signature.
	buf := t.buf[:0]
	header, buf, err := decodePart(buf, token[:dot1])
	if err != nil {
		return ErrMalformed
	}
	payload, buf, err := decodePart(buf, token[dot1+1:dot2])
	if err != nil {
		return ErrMalformed
	}
	sig, buf, err := decodePart(buf, token[dot2+1:])
	if err != nil {
		return ErrMalformed
	}
	t.buf = buf

	if err := t.header.parse(header); err != nil {
		return ErrMalformed
	}
	alg, err := v.algorithm(&t.header)
	if err != nil {
		return err
	}
	if err := v.checkSignature(alg, &t.header, token[:dot2], sig, t); err != nil {
		return err
	}
	if err := t.claims.parse(payload); err != nil {
		return ErrMalformed
	}
	return v.checkClaims(t, now)
}

func decodePart(buf, part []byte) (decoded, rest []byte, err error) {
	start := len(buf)
	n := b64.DecodedLen(len(part))
	if cap(buf)-start < n {
		return nil, buf, errors.New("token too large")
	}
	buf = buf[:start+n]
	n, err = b64.Decode(buf[start:], part)
	if err != nil {
		return nil, buf[:start], err
	}
	buf = buf[:start+n]
	return buf[start:], buf, nil
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func (v *Verifier) algorithm(h *object) (algorithm, error) {
	m, ok := h.get("alg")
	if !ok || m.kind != kindString || m.escaped {
		return 0, ErrMalformed
	}
	if asciiEqualFoldString(m.val, "none") {
		return 0, ErrAlgNone
	}
	alg := parseAlgorithm(m.val)
	if alg == 0 || v.allowed&alg == 0 {
		return 0, ErrAlgNotAllowed
	}
	if _, ok := h.get("crit"); ok {
		return 0, ErrCritical
	}
	return alg, nil
}

func asciiEqualFoldString(b []byte, lower string) bool {
	return len(b) == len(lower) && asciiEqualFold(b, lower)
}

func (v *Verifier) checkSignature(alg algorithm, h *object, input, sig []byte, t *Token) error {
	if alg == algHS256 {
		if v.secret == nil { // unreachable: the allowed mask has no HS256 without a secret
			return ErrAlgNotAllowed
		}
		mac := v.macs.Get().(hash.Hash)
		mac.Reset()
		mac.Write(input)
		sum := mac.Sum(t.mac[:0])
		v.macs.Put(mac)
		if !hmac.Equal(sum, sig) {
			return ErrBadSignature
		}
		return nil
	}
	kidMember, ok := h.get("kid")
	if !ok || kidMember.kind != kindString || kidMember.escaped || len(kidMember.val) == 0 {
		return ErrNoKid
	}
	kid := kidMember.val
	key, ok := v.keys.lookup(kid)
	if !ok {
		// Wait for a fetch (rate-limited), then look again either way: a fetch may have ended
		// just before this request asked.
		v.keys.refreshed()
		if key, ok = v.keys.lookup(kid); !ok {
			if !v.keys.HasKeys() {
				return ErrKeysUnavailable
			}
			return ErrUnknownKid
		}
	}
	if key.alg != alg {
		return ErrKeyAlgMismatch
	}
	switch alg {
	case algEdDSA:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(key.ed25519, input, sig) {
			return ErrBadSignature
		}
	case algES256:
		if len(sig) != 64 {
			return ErrBadSignature
		}
		digest := sha256.Sum256(input)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(key.ecdsa, digest[:], r, s) {
			return ErrBadSignature
		}
	case algRS256:
		digest := sha256.Sum256(input)
		if rsa.VerifyPKCS1v15(key.rsa, crypto.SHA256, digest[:], sig) != nil {
			return ErrBadSignature
		}
	default:
		return ErrAlgNotAllowed
	}
	return nil
}

func (v *Verifier) checkClaims(t *Token, now time.Time) error {
	nowSec := float64(now.UnixNano()) / 1e9
	exp, ok, err := t.number("exp")
	switch {
	case err != nil:
		return err
	case !ok:
		return ErrNoExpiry
	case nowSec >= exp+v.leeway:
		return ErrExpired
	}
	if nbf, ok, err := t.number("nbf"); err != nil {
		return err
	} else if ok && nowSec+v.leeway < nbf {
		return ErrNotYetValid
	}
	if iat, ok, err := t.number("iat"); err != nil {
		return err
	} else if ok && nowSec+v.leeway < iat {
		return ErrIssuedInFuture
	}
	if v.issuer != "" {
		m, ok := t.claims.get("iss")
		if !ok || m.kind != kindString || !t.stringEquals(m, v.issuer) {
			return ErrWrongIssuer
		}
	}
	if v.audience != "" && !t.hasAudience(v.audience) {
		return ErrWrongAudience
	}
	return nil
}

func (t *Token) number(name string) (float64, bool, error) {
	m, ok := t.claims.get(name)
	if !ok {
		return 0, false, nil
	}
	if m.kind != kindNumber {
		return 0, false, ErrBadTimeClaim
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(m.val), len(m.val)), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false, ErrBadTimeClaim
	}
	return f, true, nil
}

func (t *Token) stringEquals(m *member, want string) bool {
	if !m.escaped {
		return string(m.val) == want
	}
	start := len(t.scratch)
	t.scratch = appendUnescaped(t.scratch, m.val)
	eq := string(t.scratch[start:]) == want
	t.scratch = t.scratch[:start]
	return eq
}

func (t *Token) hasAudience(want string) bool {
	m, ok := t.claims.get("aud")
	if !ok {
		return false
	}
	switch m.kind {
	case kindString:
		return t.stringEquals(m, want)
	case kindArray:
		it := arrayElements{b: m.val}
		for {
			val, kind, escaped, ok := it.next()
			if !ok {
				return false
			}
			if kind == kindString && t.stringEquals(&member{val: val, escaped: escaped}, want) {
				return true
			}
		}
	}
	return false
}

// ClaimBytes returns a claim's value in text form: a string unescaped, a number as written,
// true or false, or an array of those joined with ",". Null, objects and arrays holding them are
// reported absent. The slice is valid until the Token is released.
func (t *Token) ClaimBytes(name string) ([]byte, bool) {
	m, ok := t.claims.get(name)
	if !ok {
		return nil, false
	}
	switch m.kind {
	case kindString:
		if !m.escaped {
			return m.val, true
		}
		start := len(t.scratch)
		t.scratch = appendUnescaped(t.scratch, m.val)
		return t.scratch[start:], true
	case kindNumber, kindTrue, kindFalse:
		return m.val, true
	case kindArray:
		start := len(t.scratch)
		it := arrayElements{b: m.val}
		for first := true; ; first = false {
			val, kind, escaped, ok := it.next()
			if !ok {
				break
			}
			if !first {
				t.scratch = append(t.scratch, ',')
			}
			switch kind {
			case kindString:
				if escaped {
					t.scratch = appendUnescaped(t.scratch, val)
				} else {
					t.scratch = append(t.scratch, val...)
				}
			case kindNumber, kindTrue, kindFalse:
				t.scratch = append(t.scratch, val...)
			default:
				t.scratch = t.scratch[:start]
				return nil, false
			}
		}
		return t.scratch[start:], true
	}
	return nil, false
}

// Claim implements proxy.ClaimGetter: the claim's value, without allocating. It is valid while
// the token is (the request) and must not be modified.
func (t *Token) Claim(name string) ([]byte, bool) { return t.ClaimBytes(name) }
