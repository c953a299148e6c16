package benchcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"os"
	"testing"
)

// TestWrite: one ECDSA P-256 certificate for localhost and 127.0.0.1, its key readable by its
// owner only (the gateway refuses a key others can read), and the combined file HAProxy reads
// holds both.
func TestWrite(t *testing.T) {
	f, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{f.Cert, f.Key}, {f.Combined, f.Combined}} {
		c, err := tls.LoadX509KeyPair(pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		key, ok := c.Leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || key.Curve != elliptic.P256() {
			t.Fatalf("key %T, want ECDSA P-256", c.Leaf.PublicKey)
		}
		for _, host := range []string{"localhost", "127.0.0.1"} {
			if err := c.Leaf.VerifyHostname(host); err != nil {
				t.Error(err)
			}
		}
	}
	st, err := os.Stat(f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
}
