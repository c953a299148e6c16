package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Algorithms, as bits so a verifier's allowed set is one mask.
type algorithm uint8

const (
	algEdDSA algorithm = 1 << iota
	algES256
	algRS256
	algHS256
)

func parseAlgorithm(name []byte) algorithm {
	switch string(name) {
	case "EdDSA":
		return algEdDSA
	case "ES256":
		return algES256
	case "RS256":
		return algRS256
	case "HS256":
		return algHS256
	}
	return 0
}

func algorithmMask(names []string) (algorithm, error) {
	var mask algorithm
	for _, n := range names {
		a := parseAlgorithm([]byte(n))
		if a == 0 {
			return 0, fmt.Errorf("unsupported algorithm %q", n)
		}
		mask |= a
	}
	return mask, nil
}

// publicKey is one verification key from a JWKS. alg is the only algorithm it verifies: the one
// its type implies, and the JWK's own "alg" (when present) must agree.
type publicKey struct {
	alg     algorithm
	ed25519 ed25519.PublicKey
	ecdsa   *ecdsa.PublicKey
	rsa     *rsa.PublicKey
}

// keyMap is an immutable set of keys by kid.
type keyMap map[string]publicKey

// jwk is the subset of RFC 7517 members the gateway reads. x5u, x5c and jku are never followed.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// parseJWKS reads a JWK Set and returns the signing keys it can use. Keys of other types or
// uses, keys without a kid and duplicate kids are skipped, each with a reason in skipped.
func parseJWKS(body []byte) (keys keyMap, skipped []string, err error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys = make(keyMap, len(set.Keys))
	for _, k := range set.Keys {
		pk, err := k.publicKey()
		switch {
		case err != nil:
			skipped = append(skipped, fmt.Sprintf("kid %q: %v", k.Kid, err))
		case k.Kid == "":
			skipped = append(skipped, "a key without kid")
		default:
			if _, dup := keys[k.Kid]; dup {
				skipped = append(skipped, fmt.Sprintf("kid %q: duplicate", k.Kid))
				delete(keys, k.Kid) // ambiguous: neither is trusted
				continue
			}
			keys[k.Kid] = pk
		}
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("the set holds no usable signing key")
	}
	return keys, skipped, nil
}

var b64 = base64.RawURLEncoding.Strict()

func (k jwk) publicKey() (publicKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return publicKey{}, fmt.Errorf("use %q is not sig", k.Use)
	}
	var pk publicKey
	switch {
	case k.Kty == "OKP" && k.Crv == "Ed25519":
		x, err := b64.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, errors.New("x is not a base64url Ed25519 public key")
		}
		pk = publicKey{alg: algEdDSA, ed25519: ed25519.PublicKey(x)}
	case k.Kty == "EC" && k.Crv == "P-256":
		x, errX := b64.DecodeString(k.X)
		y, errY := b64.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return publicKey{}, errors.New("x and y are not base64url P-256 coordinates")
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return publicKey{}, fmt.Errorf("not a P-256 point: %w", err)
		}
		pk = publicKey{alg: algES256, ecdsa: pub}
	case k.Kty == "RSA":
		n, errN := b64.DecodeString(k.N)
		e, errE := b64.DecodeString(k.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return publicKey{}, errors.New("n and e are not a base64url RSA public key")
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if pub.N.BitLen() < minRSABits || exp < 3 || exp%2 == 0 {
			return publicKey{}, fmt.Errorf("RSA key of %d bits with exponent %d refused (at least %d bits, odd exponent)", pub.N.BitLen(), exp, minRSABits)
		}
		pk = publicKey{alg: algRS256, rsa: pub}
	default:
		return publicKey{}, fmt.Errorf("key type %q (curve %q) is not supported", k.Kty, k.Crv)
	}
	if k.Alg != "" && parseAlgorithm([]byte(k.Alg)) != pk.alg {
		return publicKey{}, fmt.Errorf("alg %q does not match a %s key", k.Alg, k.Kty)
	}
	return pk, nil
}
