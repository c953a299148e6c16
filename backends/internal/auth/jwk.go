package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// JWK is a public key in JSON Web Key form. Only OKP/Ed25519 keys (RFC 8037) are produced and
// used; other key types in a set are skipped.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// JWKSet is a JSON Web Key Set, the body of /.well-known/jwks.json.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK returns pub as a JWK with kid = Thumbprint(pub), use sig and alg EdDSA.
func PublicJWK(pub ed25519.PublicKey) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
		Kid: Thumbprint(pub), Use: "sig", Alg: "EdDSA"}
}

// Thumbprint returns the RFC 7638 JWK thumbprint of an Ed25519 public key (SHA-256 over the
// canonical {"crv","kty","x"} members), base64url without padding.
func Thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Ed25519 returns the key of an OKP/Ed25519 signing JWK, or an error for anything else.
func (k JWK) Ed25519() (ed25519.PublicKey, error) {
	if k.Kty != "OKP" || k.Crv != "Ed25519" {
		return nil, fmt.Errorf("jwk %q: not an OKP/Ed25519 key", k.Kid)
	}
	if k.Use != "" && k.Use != "sig" {
		return nil, fmt.Errorf("jwk %q: use %q is not sig", k.Kid, k.Use)
	}
	if k.Alg != "" && k.Alg != "EdDSA" {
		return nil, fmt.Errorf("jwk %q: alg %q is not EdDSA", k.Kid, k.Alg)
	}
	x, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("jwk %q: x is not a base64url Ed25519 public key", k.Kid)
	}
	return ed25519.PublicKey(x), nil
}

// KeySource finds the Ed25519 public key for a token's kid. Implementations return an error
// wrapping ErrUnknownKey when there is no such key.
type KeySource interface {
	PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// ErrUnknownKey is wrapped when a KeySource has no key for a kid.
var ErrUnknownKey = errors.New("unknown signing key")

// StaticKeys is a fixed KeySource: kid to public key. Do not modify it once in use.
type StaticKeys map[string]ed25519.PublicKey

var _ KeySource = StaticKeys(nil)

// PublicKey returns the key for kid.
func (s StaticKeys) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}

// LoadOrCreateEd25519Key reads a PKCS#8 PEM Ed25519 private key from path, or, when the file does
// not exist, generates one and writes it there with mode 0600 (creating the directory with mode
// 0700). It refuses a key file that group or others may read or write.
func LoadOrCreateEd25519Key(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stat key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o: group and others must have no access (chmod 600)", path, st.Mode().Perm())
	}
	return ParseEd25519Key(data)
}

// ParseEd25519Key parses a PKCS#8 PEM ("PRIVATE KEY") Ed25519 private key.
func ParseEd25519Key(pemData []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("parse key: no PEM PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	edKey, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse key: %T is not an Ed25519 key", key)
	}
	return edKey, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	// Write a temporary file, then link it into place: the key appears whole or not at all, and
	// if another process created one meanwhile, its key wins and is used.
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create key file: %w", err)
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateEd25519Key(path)
		}
		return nil, fmt.Errorf("create key file: %w", err)
	}
	return key, nil
}
