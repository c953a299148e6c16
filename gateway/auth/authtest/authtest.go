// Package authtest mints tokens and JWK Sets for tests, with keys made the way the users service
// makes them: Ed25519, kid = the RFC 7638 thumbprint, published as an OKP JWK with use sig and alg
// EdDSA. It also forges what no honest issuer produces (alg none, HMAC with a public key, ...).
// Test code only.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Key is an Ed25519 signing key with its kid.
type Key struct {
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
	Kid     string
}

// NewKey generates a key; its kid is its thumbprint, as the users service computes it.
func NewKey(tb testing.TB) Key {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return Key{Private: priv, Public: pub, Kid: Thumbprint(pub)}
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 public key, base64url.
func Thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWK returns the key as the users service publishes it.
func (k Key) JWK() map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(k.Public),
		"kid": k.Kid, "use": "sig", "alg": "EdDSA"}
}

// Claims are the claims the users service issues for a customer, valid for an hour from now.
func Claims(sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"iss": "archway-users", "aud": []string{"archway"}, "sub": sub,
		"email": "ana@example.com", "role": "customer", "iat": now, "exp": now + 3600, "jti": "t-" + sub}
}

// Token signs claims with EdDSA under the key's kid.
func (k Key) Token(tb testing.TB, claims map[string]any) string {
	return Sign(tb, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": k.Kid}, claims, k.Signer())
}

// Signer signs with the key.
func (k Key) Signer() func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(k.Private, in) }
}

// HMACSigner signs with HS256 and secret.
func HMACSigner(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// Sign builds a compact JWS from any header and claims.
func Sign(tb testing.TB, header, claims map[string]any, signer func([]byte) []byte) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return SignRaw(h, c, signer)
}

// SignRaw builds a compact JWS from raw header and payload bytes.
func SignRaw(header, payload []byte, signer func([]byte) []byte) string {
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(signer([]byte(input)))
}

// ECKey is a P-256 key for ES256.
type ECKey struct {
	Private *ecdsa.PrivateKey
	Kid     string
}

// NewECKey generates a P-256 key.
func NewECKey(tb testing.TB, kid string) ECKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return ECKey{Private: k, Kid: kid}
}

// JWK returns the public key as a JWK.
func (k ECKey) JWK() map[string]any {
	b, _ := k.Private.PublicKey.Bytes() // 0x04 || x || y
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": k.Kid, "alg": "ES256",
		"x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])}
}

// Signer signs with ES256 (r || s, 32 bytes each).
func (k ECKey) Signer() func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, k.Private, d[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// RSAKey is a 2048-bit key for RS256.
type RSAKey struct {
	Private *rsa.PrivateKey
	Kid     string
}

// NewRSAKey generates a 2048-bit RSA key.
func NewRSAKey(tb testing.TB, kid string) RSAKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return RSAKey{Private: k, Kid: kid}
}

// JWK returns the public key as a JWK.
func (k RSAKey) JWK() map[string]any {
	return map[string]any{"kty": "RSA", "kid": k.Kid, "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.Private.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.Private.E)).Bytes())}
}

// Signer signs with RS256.
func (k RSAKey) Signer() func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k.Private, crypto.SHA256, d[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
}

// JWKSServer serves a JWK Set over a real loopback socket and counts requests. Fail makes it
// answer 500; SetKeys replaces the set.
type JWKSServer struct {
	*httptest.Server
	hits atomic.Int64
	fail atomic.Bool
	mu   sync.Mutex
	keys []map[string]any
}

// NewJWKSServer serves keys until the test ends.
func NewJWKSServer(tb testing.TB, keys ...map[string]any) *JWKSServer {
	s := &JWKSServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	tb.Cleanup(s.Close)
	return s
}

// URL of the set.
func (s *JWKSServer) URL() string { return s.Server.URL + "/.well-known/jwks.json" }

// Hits is how many requests the server answered.
func (s *JWKSServer) Hits() int64 { return s.hits.Load() }

// Fail makes the server answer 500 (true) or the set again (false).
func (s *JWKSServer) Fail(fail bool) { s.fail.Store(fail) }

// SetKeys replaces the published keys.
func (s *JWKSServer) SetKeys(keys ...map[string]any) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}
