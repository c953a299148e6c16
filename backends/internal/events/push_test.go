package events

import (
	"strings"
	"testing"
)

func TestSignatures(t *testing.T) {
	secret := []byte(strings.Repeat("s", MinSecretLen))
	body := []byte(`{"id":"e1","type":"order.cancelled"}`)
	good := Sign(secret, body)
	if !strings.HasPrefix(good, "sha256=") || len(good) != len("sha256=")+64 {
		t.Fatalf("Sign = %q", good)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   bool
	}{
		{"signed", secret, body, good, true},
		{"other body", secret, []byte(`{"id":"e2","type":"order.cancelled"}`), good, false},
		{"other secret", []byte(strings.Repeat("t", MinSecretLen)), body, good, false},
		{"no prefix", secret, body, strings.TrimPrefix(good, "sha256="), false},
		{"not hex", secret, body, "sha256=zz" + good[9:], false},
		{"truncated", secret, body, good[:len(good)-2], false},
		{"empty header", secret, body, "", false},
		{"empty secret", nil, body, Sign(nil, body), false},
	} {
		if got := CheckSignature(tc.secret, tc.body, tc.header); got != tc.want {
			t.Errorf("%s: CheckSignature = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidateSecret(t *testing.T) {
	if err := ValidateSecret(""); err != nil {
		t.Errorf("empty (off): %v", err)
	}
	if err := ValidateSecret(strings.Repeat("x", MinSecretLen)); err != nil {
		t.Errorf("long enough: %v", err)
	}
	if err := ValidateSecret("hunter2"); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short secret: %v", err)
	}
}
