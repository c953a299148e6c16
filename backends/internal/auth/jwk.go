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

	"github.com/golang-jwt/jwt/v5"
)

// JWK is a public key in JSON Web Key form, as the users service publishes it: only OKP/Ed25519
// keys (RFC 8037) are produced.
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

// Keys finds the verification key for a token by its kid: a *JWKS for the users service's
// remote set, or an Issuer's own Keys. keyfunc.Keyfunc satisfies it.
type Keys interface {
	KeyfuncCtx(ctx context.Context) jwt.Keyfunc
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
	// Linked into place, not renamed: if another process created a key meanwhile, its key wins
	// and is used.
	if err := writeKeyFile(path, der, os.Link); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateEd25519Key(path)
		}
		return nil, err
	}
	return key, nil
}

// InstallEd25519Key copies the Ed25519 private key at src (PKCS#8 PEM) to dst with mode 0600,
// replacing dst. It is how replicas share one signing key where the key's source cannot have
// mode 0600 itself: a Kubernetes Secret volume, whose files the kubelet makes group-readable for
// the pod's fsGroup, is copied by an init container into a volume of the pod's own, where
// LoadOrCreateEd25519Key then accepts it. src is parsed first, so a wrong key never reaches dst.
func InstallEd25519Key(src, dst string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ParseEd25519Key(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if err := writeKeyFile(dst, der, os.Rename); err != nil {
		return nil, err
	}
	return key, nil
}

// writeKeyFile writes der as a PEM PRIVATE KEY to a temporary file of mode 0600 beside path and
// moves it into place with place (os.Link or os.Rename), so the key appears whole or not at all.
// The directory is created with mode 0700 when missing.
func writeKeyFile(path string, der []byte, place func(oldpath, newpath string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("create key file: %w", err)
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := place(tmp.Name(), path); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	return nil
}
