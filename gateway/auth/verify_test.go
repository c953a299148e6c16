package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
)

// newJWKSVerifier starts a JWKS server with keys and a verifier over it, and waits until the
// first fetch is done.
func newJWKSVerifier(t testing.TB, algs []string, opts KeySetOptions, keys ...map[string]any) (*Verifier, *KeySet, *authtest.JWKSServer) {
	t.Helper()
	srv := authtest.NewJWKSServer(t, keys...)
	if opts.MinRefresh == 0 {
		opts.MinRefresh = 30 * time.Second
	}
	if opts.Refresh == 0 {
		opts.Refresh = 10 * time.Minute
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	ks := NewKeySet(context.Background(), srv.URL(), opts)
	t.Cleanup(ks.Stop)
	waitFor(t, "first JWKS fetch", func() bool { return !ks.fetching.Load() })
	v, err := NewVerifier(VerifierConfig{Keys: ks, Algorithms: algs, Issuer: "archway-users", Audience: "archway", Leeway: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return v, ks, srv
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func verify(v *Verifier, token string) error {
	tok := AcquireToken()
	defer ReleaseToken(tok)
	return v.Verify([]byte(token), time.Now(), tok)
}

func encode(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifierRejects(t *testing.T) {
	key := authtest.NewKey(t)
	other := authtest.NewKey(t)
	v, _, _ := newJWKSVerifier(t, []string{"EdDSA"}, KeySetOptions{}, key.JWK())
	now := time.Now().Unix()
	with := func(k string, val any) map[string]any {
		c := authtest.Claims("7")
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	hdr := func(extra ...any) map[string]any {
		h := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": key.Kid}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == nil {
				delete(h, extra[i].(string))
			} else {
				h[extra[i].(string)] = extra[i+1]
			}
		}
		return h
	}
	good := key.Token(t, authtest.Claims("7"))
	parts := strings.Split(good, ".")
	noSig := func([]byte) []byte { return nil }
	ec := authtest.NewECKey(t, "ec-1")

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", authtest.Sign(t, hdr("alg", "none"), authtest.Claims("7"), noSig), ErrAlgNone},
		{"alg None", authtest.Sign(t, hdr("alg", "None"), authtest.Claims("7"), noSig), ErrAlgNone},
		{"alg none with our signature", authtest.Sign(t, hdr("alg", "none"), authtest.Claims("7"), key.Signer()), ErrAlgNone},
		{"HS256 forged with the raw public key", authtest.Sign(t, hdr("alg", "HS256"), authtest.Claims("7"), authtest.HMACSigner(key.Public)), ErrAlgNotAllowed},
		{"HS256 forged with the JWK x", authtest.Sign(t, hdr("alg", "HS256"), authtest.Claims("7"), authtest.HMACSigner([]byte(key.JWK()["x"].(string)))), ErrAlgNotAllowed},
		{"ES256 not listed", authtest.Sign(t, hdr("alg", "ES256", "kid", ec.Kid), authtest.Claims("7"), ec.Signer()), ErrAlgNotAllowed},
		{"RS256 not listed", authtest.Sign(t, hdr("alg", "RS256"), authtest.Claims("7"), key.Signer()), ErrAlgNotAllowed},
		{"unknown algorithm", authtest.Sign(t, hdr("alg", "PS256"), authtest.Claims("7"), key.Signer()), ErrAlgNotAllowed},
		{"alg not a string", authtest.Sign(t, hdr("alg", 1), authtest.Claims("7"), key.Signer()), ErrMalformed},
		{"no alg", authtest.Sign(t, hdr("alg", nil), authtest.Claims("7"), key.Signer()), ErrMalformed},
		{"crit header", authtest.Sign(t, hdr("crit", []string{"exp"}), authtest.Claims("7"), key.Signer()), ErrCritical},
		{"wrong issuer", key.Token(t, with("iss", "mallory")), ErrWrongIssuer},
		{"no issuer", key.Token(t, with("iss", nil)), ErrWrongIssuer},
		{"issuer not a string", key.Token(t, with("iss", []string{"archway-users"})), ErrWrongIssuer},
		{"wrong audience", key.Token(t, with("aud", "elsewhere")), ErrWrongAudience},
		{"wrong audience list", key.Token(t, with("aud", []string{"a", "b"})), ErrWrongAudience},
		{"no audience", key.Token(t, with("aud", nil)), ErrWrongAudience},
		{"expired beyond the leeway", key.Token(t, with("exp", now-31)), ErrExpired},
		{"no exp", key.Token(t, with("exp", nil)), ErrNoExpiry},
		{"exp as a string", key.Token(t, with("exp", "9999999999")), ErrBadTimeClaim},
		{"not yet valid", key.Token(t, with("nbf", now+60)), ErrNotYetValid},
		{"issued in the future", key.Token(t, with("iat", now+60)), ErrIssuedInFuture},
		{"signed by another key under our kid", authtest.Sign(t, hdr(), authtest.Claims("7"), other.Signer()), ErrBadSignature},
		{"tampered claims", parts[0] + "." + encode(`{"iss":"archway-users","aud":"archway","sub":"1","role":"admin","exp":9999999999}`) + "." + parts[2], ErrBadSignature},
		{"signature cut short", authtest.Sign(t, hdr(), authtest.Claims("7"), func(in []byte) []byte { return key.Signer()(in)[:32] }), ErrBadSignature},
		{"unknown kid", other.Token(t, authtest.Claims("7")), ErrUnknownKid},
		{"no kid", authtest.Sign(t, hdr("kid", nil), authtest.Claims("7"), key.Signer()), ErrNoKid},
		{"kid not a string", authtest.Sign(t, hdr("kid", 7), authtest.Claims("7"), key.Signer()), ErrNoKid},
		// The key in the jwk header, or behind jku or x5u, is never used: these tokens are
		// signed by an attacker's key that the header names.
		{"embedded jwk ignored", authtest.Sign(t, hdr("jwk", other.JWK(), "kid", other.Kid), authtest.Claims("7"), other.Signer()), ErrUnknownKid},
		{"jku ignored", authtest.Sign(t, hdr("jku", "http://127.0.0.1:1/jwks.json", "kid", other.Kid), authtest.Claims("7"), other.Signer()), ErrUnknownKid},
		{"x5u ignored", authtest.Sign(t, hdr("x5u", "http://127.0.0.1:1/cert.pem"), authtest.Claims("7"), other.Signer()), ErrBadSignature},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"padding", good + "=", ErrMalformed},
		{"standard base64 alphabet", strings.ReplaceAll(good, "_", "/") + "+", ErrMalformed},
		{"header not JSON", encode("alg=EdDSA") + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"duplicate exp", authtest.SignRaw([]byte(`{"alg":"EdDSA","kid":"`+key.Kid+`"}`), []byte(`{"iss":"archway-users","aud":"archway","exp":1,"exp":9999999999}`), key.Signer()), ErrMalformed},
		{"escaped member name", authtest.SignRaw([]byte(`{"alg":"EdDSA","kid":"`+key.Kid+`"}`), []byte(`{"iss":"archway-users","aud":"archway","exp":9999999999,"\u0065xp":1}`), key.Signer()), ErrMalformed},
		{"trailing data after the claims", authtest.SignRaw([]byte(`{"alg":"EdDSA","kid":"`+key.Kid+`"}`), []byte(`{"iss":"archway-users","aud":"archway","exp":9999999999}{}`), key.Signer()), ErrMalformed},
		{"claims not an object", authtest.SignRaw([]byte(`{"alg":"EdDSA","kid":"`+key.Kid+`"}`), []byte(`[1]`), key.Signer()), ErrMalformed},
		{"over 8 KiB", key.Token(t, with("pad", strings.Repeat("x", 8<<10))), ErrHeaderTooLarge},
		{"empty", "", ErrMalformed},
		{"garbage", "not.a.token", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := verify(v, tc.token); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	// The controls: the same construction verifies when nothing is wrong, so each rejection
	// above is for the reason it names.
	for name, token := range map[string]string{
		"good":                      good,
		"hand-built":                authtest.Sign(t, hdr(), authtest.Claims("7"), key.Signer()),
		"expired within the leeway": key.Token(t, with("exp", now-20)),
		"audience as a string":      key.Token(t, with("aud", "archway")),
		"audience among others":     key.Token(t, with("aud", []string{"x", "archway"})),
		"escaped issuer":            authtest.SignRaw([]byte(`{"alg":"EdDSA","kid":"`+key.Kid+`"}`), []byte(`{"iss":"archway\u002dusers","aud":"archway","exp":9999999999}`), key.Signer()),
		"fractional exp":            key.Token(t, with("exp", float64(now)+100.5)),
		"unknown header members":    authtest.Sign(t, hdr("typ", "at+jwt", "cty", "x"), authtest.Claims("7"), key.Signer()),
	} {
		if err := verify(v, token); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestVerifierAlgorithms(t *testing.T) {
	ed := authtest.NewKey(t)
	ec := authtest.NewECKey(t, "ec-1")
	rs := authtest.NewRSAKey(t, "rsa-1")
	v, _, _ := newJWKSVerifier(t, []string{"EdDSA", "ES256", "RS256"}, KeySetOptions{}, ed.JWK(), ec.JWK(), rs.JWK())
	claims := authtest.Claims("3")
	for name, token := range map[string]string{
		"EdDSA": ed.Token(t, claims),
		"ES256": authtest.Sign(t, map[string]any{"alg": "ES256", "kid": ec.Kid}, claims, ec.Signer()),
		"RS256": authtest.Sign(t, map[string]any{"alg": "RS256", "kid": rs.Kid}, claims, rs.Signer()),
	} {
		if err := verify(v, token); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A key verifies only the algorithm of its own type: an EdDSA token naming the RSA key's kid
	// is refused before any signature check.
	mixed := authtest.Sign(t, map[string]any{"alg": "EdDSA", "kid": rs.Kid}, claims, ed.Signer())
	if err := verify(v, mixed); !errors.Is(err, ErrKeyAlgMismatch) {
		t.Errorf("EdDSA token under an RSA kid: %v", err)
	}
	es := authtest.Sign(t, map[string]any{"alg": "ES256", "kid": ed.Kid}, claims, ec.Signer())
	if err := verify(v, es); !errors.Is(err, ErrKeyAlgMismatch) {
		t.Errorf("ES256 token under an Ed25519 kid: %v", err)
	}
}

func TestVerifierHS256(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	v, err := NewVerifier(VerifierConfig{Secret: secret, Algorithms: []string{"HS256"}, Issuer: "archway-users", Audience: "archway"})
	if err != nil {
		t.Fatal(err)
	}
	hs := map[string]any{"alg": "HS256", "typ": "JWT"}
	if err := verify(v, authtest.Sign(t, hs, authtest.Claims("1"), authtest.HMACSigner(secret))); err != nil {
		t.Fatalf("HS256 token: %v", err)
	}
	key := authtest.NewKey(t)
	for name, tc := range map[string]struct {
		token string
		want  error
	}{
		"EdDSA token":     {key.Token(t, authtest.Claims("1")), ErrAlgNotAllowed},
		"other secret":    {authtest.Sign(t, hs, authtest.Claims("1"), authtest.HMACSigner([]byte(strings.Repeat("t", 32)))), ErrBadSignature},
		"alg none":        {authtest.Sign(t, map[string]any{"alg": "none"}, authtest.Claims("1"), func([]byte) []byte { return nil }), ErrAlgNone},
		"empty signature": {authtest.Sign(t, hs, authtest.Claims("1"), func([]byte) []byte { return nil }), ErrBadSignature},
	} {
		if err := verify(v, tc.token); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	for _, bad := range []VerifierConfig{
		{Secret: secret, Algorithms: []string{"EdDSA"}},
		{Keys: &KeySet{}, Algorithms: []string{"HS256"}},
		{Keys: &KeySet{}, Secret: secret, Algorithms: []string{"EdDSA"}},
		{Algorithms: []string{"EdDSA"}},
		{Secret: secret, Algorithms: []string{"none"}},
	} {
		if _, err := NewVerifier(bad); err == nil {
			t.Errorf("NewVerifier(%+v) accepted", bad)
		}
	}
}

func TestClaimBytes(t *testing.T) {
	key := authtest.NewKey(t)
	v, _, _ := newJWKSVerifier(t, []string{"EdDSA"}, KeySetOptions{}, key.JWK())
	payload := `{"iss":"archway-users","aud":"archway","exp":9999999999,"sub":"42","email":"ana\u0040example.com",` +
		`"roles":["admin","ops"],"n":1.5,"ok":true,"obj":{"a":1},"null":null,"mixed":[1,{"x":2}],"uni":"caf\u00e9 \ud83d\ude00"}`
	token := authtest.SignRaw([]byte(`{"alg":"EdDSA","kid":"`+key.Kid+`"}`), []byte(payload), key.Signer())
	tok := AcquireToken()
	defer ReleaseToken(tok)
	if err := v.Verify([]byte(token), time.Now(), tok); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"sub": "42", "email": "ana@example.com", "roles": "admin,ops", "n": "1.5", "ok": "true", "aud": "archway",
		"uni": "café 😀",
	} {
		if got, ok := tok.Claim(name); !ok || string(got) != want {
			t.Errorf("Claim(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, absent := range []string{"obj", "null", "mixed", "missing"} {
		if got, ok := tok.Claim(absent); ok {
			t.Errorf("Claim(%q) = %q, want absent", absent, got)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":    "abc",
		"bearer abc":    "abc",
		"BEARER  abc  ": "abc",
		"Bearer\tabc":   "abc",
		"Bearer":        "",
		"Bearer ":       "",
		"Bearerabc":     "",
		"Basic abc":     "",
		"":              "",
	} {
		got, ok := BearerToken([]byte(in))
		if string(got) != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestObjectParse(t *testing.T) {
	valid := []string{
		`{}`, ` { "a" : 1 } `, `{"a":"x\"y","b":[1,2,{"c":[]}],"d":-0.5e+3,"e":true,"f":false,"g":null}`,
		`{"a":"\u00e9\n"}`,
	}
	invalid := []string{
		``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{a:1}`, `{"a":01}`, `{"a":1.}`,
		`{"a":.5}`, `{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":tru}`, `{"a":1}x`, `{"a":1,"a":2}`,
		`{"\u0061":1}`, `{"a":[1,]}`, `{"a":{"b"}}`, `{"a":"unterminated}`, `{"a":1e}`,
		`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
	}
	var o object
	for _, s := range valid {
		if err := o.parse([]byte(s)); err != nil {
			t.Errorf("parse(%q): %v", s, err)
		}
	}
	for _, s := range invalid {
		if err := o.parse([]byte(s)); err == nil {
			t.Errorf("parse(%q) accepted", s)
		}
	}
}

// FuzzVerify holds that no token, however malformed, panics the verifier or is accepted
// without the key's signature.
func FuzzVerify(f *testing.F) {
	key := authtest.NewKey(f)
	v, _, _ := newJWKSVerifier(f, []string{"EdDSA"}, KeySetOptions{Timeout: 50 * time.Millisecond}, key.JWK())
	good := key.Token(f, authtest.Claims("1"))
	f.Add(good)
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(encode(`{"alg":"none"}`) + "." + encode(`{"exp":1}`) + ".")
	f.Fuzz(func(t *testing.T, token string) {
		err := verify(v, token)
		if err == nil && token != good {
			// Anything else that verifies must carry a valid signature by our key over
			// different bytes, which a fuzzer cannot forge; base64 malleability aside, this
			// is a forgery.
			t.Fatalf("accepted %q", token)
		}
	})
}

// FuzzObjectParse holds the token JSON reader to a subset of what encoding/json accepts, and
// to never panicking.
func FuzzObjectParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"c"}],"d":"\u00e9"}`, `{"a":1,"a":2}`, `{"a":-1.5e3}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var o object
		if o.parse([]byte(s)) == nil && !json.Valid([]byte(s)) {
			t.Fatalf("accepted invalid JSON %q", s)
		}
		for i := range o.members[:o.n] {
			if o.members[i].kind == kindString && o.members[i].escaped {
				_ = appendUnescaped(nil, o.members[i].val)
			}
		}
	})
}
