package proxy

import (
	"net/http"
	"testing"
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
