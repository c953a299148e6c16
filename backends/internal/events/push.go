package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Without a broker, the orders service pushes the events another service consumes to that
// service over HTTP, from its outbox, one at a time and in order: the body is the same envelope
// a broker would carry, signed with a secret both services share.
const (
	// PushPath is where a consuming service accepts pushed order events (POST).
	PushPath = "/events/orders"
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body under the shared
	// secret. Nothing else is signed: a replayed body is an event the consumer already applied
	// (Once records its id), so a timestamp would add nothing.
	SignatureHeader = "Archway-Event-Signature"
	// MinSecretLen is the shortest shared secret accepted (in bytes), so a guessed or typed
	// word is refused.
	MinSecretLen = 32

	signaturePrefix = "sha256="
)

// ValidateSecret checks a push secret from configuration; empty (pushing off) is valid.
func ValidateSecret(secret string) error {
	if secret != "" && len(secret) < MinSecretLen {
		return fmt.Errorf("events secret is %d bytes; use at least %d (e.g. openssl rand -hex 32)", len(secret), MinSecretLen)
	}
	return nil
}

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// CheckSignature reports whether header is body's signature under secret, in constant time.
func CheckSignature(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(secret) == 0 {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(sum, m.Sum(nil))
}
