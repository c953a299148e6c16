package proxy

import "bytes"

import "github.com/valyala/fasthttp"

var hVary = []byte(fasthttp.HeaderVary)

// AddVary makes the response vary on the request header named token (canonical form, e.g.
// "Origin"), once: policies that choose a response by a request header (CORS by Origin,
// compression by Accept-Encoding) call it so shared caches keep the variants apart. Existing
// Vary fields are kept; "Vary: *" already covers everything. Allocates nothing.
func AddVary(h *fasthttp.ResponseHeader, token []byte) {
	for _, v := range h.PeekAll(fasthttp.HeaderVary) {
		found := false
		forEachToken(v, func(t []byte) {
			if len(t) == 1 && t[0] == '*' || bytes.EqualFold(t, token) {
				found = true
			}
		})
		if found {
			return
		}
	}
	h.AddBytesKV(hVary, token)
}
