package proxy

import (
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// The request path sets these names with SetCanonical, which trusts them to be canonical: a
// name written otherwise would reach the upstream (or the client) as a second, differently
// spelled header instead of replacing the first.
func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, k := range [][]byte{
		hConnection, hKeepAlive, hTE, hTrailer, hUpgrade, hExpect, hXForwardedFor, hXForwardedHost,
		hXForwardedProto, hXForwardedPort, hXForwardedPrefix, hXRealIP, hForwarded, hXRequestID,
	} {
		if c := http.CanonicalHeaderKey(string(k)); c != string(k) {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
	}
}

func TestSecurityPresentFollowsTheFirstCopy(t *testing.T) {
	security := []KV{
		{Key: []byte("X-Frame-Options"), Value: []byte("SAMEORIGIN")},
		{Key: []byte("X-Content-Type-Options"), Value: []byte("nosniff")},
		{Key: []byte("Referrer-Policy"), Value: []byte("no-referrer")},
		{Key: []byte("Content-Type"), Value: []byte("text/plain")},
	}
	var h fasthttp.ResponseHeader
	h.Set("x-frame-options", "DENY")           // parsed names are normalised: present
	h.Add("X-Content-Type-Options", "")        // first copy empty: absent, as PeekBytes says
	h.Add("X-Content-Type-Options", "nosniff") // a later copy does not count
	h.SetContentType("application/json")       // a header fasthttp keeps apart still counts
	got := securityPresent(&h, security)
	if want := uint64(1<<0 | 1<<3); got != want {
		t.Fatalf("present = %04b, want %04b", got, want)
	}
	for i, kv := range security {
		if peeked := len(h.PeekBytes(kv.Key)) > 0; peeked != (got&(1<<i) != 0) {
			t.Errorf("%s: PeekBytes says present=%v", kv.Key, peeked)
		}
	}
}
