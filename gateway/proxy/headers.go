package proxy

import (
	"math/rand/v2"
	"net/netip"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/valyala/fasthttp"
)

// Header names, as byte slices so deleting and setting them allocates nothing. They are written
// in canonical form (as fasthttp normalises names), so the request path sets them with
// SetCanonical and skips normalising a copy of the name on every request; route and security
// header names are canonicalised the same way when a snapshot is built.
var (
	hConnection       = []byte("Connection")
	hKeepAlive        = []byte("Keep-Alive")
	hTE               = []byte("Te")
	hTrailer          = []byte("Trailer")
	hUpgrade          = []byte("Upgrade")
	hExpect           = []byte("Expect")
	hXForwardedFor    = []byte("X-Forwarded-For")
	hXForwardedHost   = []byte("X-Forwarded-Host")
	hXForwardedProto  = []byte("X-Forwarded-Proto")
	hXForwardedPort   = []byte("X-Forwarded-Port")
	hXForwardedPrefix = []byte("X-Forwarded-Prefix")
	hXRealIP          = []byte("X-Real-Ip")
	hForwarded        = []byte("Forwarded")
	hXRequestID       = []byte("X-Request-Id")
	vHTTP             = []byte("http")
)

// stripRequestHopByHop deletes, from the request about to be forwarded, every hop-by-hop header
// the scan found: Connection and each header it names, Keep-Alive, Proxy and Proxy-*, TE,
// Trailer, Upgrade, and Expect (the gateway has already answered 100-continue itself).
// Transfer-Encoding is not forwarded as such: the body is re-framed by the writer.
func stripRequestHopByHop(req *fasthttp.RequestHeader, f *protocol.HeaderFacts, raw []byte) {
	// A client's "Connection: close" is about the client connection only; the server loop has
	// already noted it. Cleared here so the upstream connection stays open.
	req.ResetConnectionClose()
	if f.Present == 0 {
		return
	}
	if f.Has(protocol.HasConnection) {
		for _, s := range f.Connection[:f.NConnection] {
			forEachToken(s.Of(raw), req.DelBytes)
		}
		req.DelBytes(hConnection)
	}
	if f.Has(protocol.HasKeepAlive) {
		req.DelBytes(hKeepAlive)
	}
	if f.Has(protocol.HasProxyFields) {
		for _, s := range f.ProxyNames[:f.NProxyNames] {
			req.DelBytes(s.Of(raw))
		}
	}
	if f.Has(protocol.HasTE) {
		req.DelBytes(hTE)
	}
	if f.Has(protocol.HasTrailer) {
		req.DelBytes(hTrailer)
	}
	if f.Has(protocol.HasUpgrade) {
		req.DelBytes(hUpgrade)
	}
	if f.Has(protocol.HasExpect) {
		req.DelBytes(hExpect)
	}
}

// forEachToken calls fn for each comma-separated token of a header value, trimmed.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		tok, v = protocol.NextListItem(v)
		if len(tok) > 0 {
			fn(tok)
		}
	}
}

// resolveClientIP works out the client's address. From an untrusted peer it is the peer. From a
// trusted proxy it is the rightmost X-Forwarded-For address that is not itself a trusted proxy
// (addresses left of it could have been written by anyone).
func resolveClientIP(x *Exchange, raw []byte) {
	x.ClientIP = x.Peer
	if !x.PeerTrusted || !x.Facts.Has(protocol.HasXForwardedFor) {
		return
	}
	for i := x.Facts.NForwardedFor - 1; i >= 0; i-- {
		v := x.Facts.ForwardedFor[i].Of(raw)
		for len(v) > 0 {
			j := len(v) - 1
			for j >= 0 && v[j] != ',' {
				j--
			}
			tok := trimSpace(v[j+1:])
			if j >= 0 {
				v = v[:j]
			} else {
				v = v[:0]
			}
			addr, ok := parseAddr(tok)
			if !ok {
				return // garbage: stop at the last address we could vouch for
			}
			x.ClientIP = addr
			if !x.Snapshot.trusted(addr) {
				return
			}
		}
	}
}

func parseAddr(b []byte) (netip.Addr, bool) {
	// Bracketed IPv6 with a port, and IPv4 with a port, appear in the wild.
	if len(b) > 0 && b[0] == '[' {
		for i := range b {
			if b[i] == ']' {
				b = b[1:i]
				break
			}
		}
	} else if n := countByte(b, ':'); n == 1 {
		for i := range b {
			if b[i] == ':' {
				b = b[:i]
				break
			}
		}
	}
	var a netip.Addr
	if err := a.UnmarshalText(b); err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func countByte(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// setForwardedHeaders replaces the client's forwarding headers with the gateway's own. Every
// copy a client sent is deleted first (fasthttp's Set would replace only the first of several).
// A trusted proxy's X-Forwarded-For chain is kept and extended; its X-Forwarded-Host, -Proto,
// -Port, -Prefix and Forwarded pass through. From anyone else they are dropped. The scheme is
// the listener's: https on a TLS listener. Forwarded (RFC 7239) is set to the peer and scheme
// unless a trusted proxy sent its own.
func setForwardedHeaders(x *Exchange, raw []byte) {
	req := &x.Ctx.Request.Header
	f := &x.Facts
	buf := x.scratch[:0]
	if x.PeerTrusted && f.Has(protocol.HasXForwardedFor) {
		for i, s := range f.ForwardedFor[:f.NForwardedFor] {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			buf = append(buf, s.Of(raw)...)
		}
		buf = append(buf, ", "...)
	}
	buf = x.Peer.AppendTo(buf)
	if f.Has(protocol.HasXForwardedFor) {
		req.DelBytes(hXForwardedFor)
	}
	req.SetCanonical(hXForwardedFor, buf)

	ipStart := len(buf)
	buf = x.ClientIP.AppendTo(buf)
	if f.Has(protocol.HasXRealIP) {
		req.DelBytes(hXRealIP)
	}
	req.SetCanonical(hXRealIP, buf[ipStart:])
	x.scratch = buf

	if !x.PeerTrusted || !f.Has(protocol.HasXForwardedHost) {
		if f.Has(protocol.HasXForwardedHost) {
			req.DelBytes(hXForwardedHost)
		}
		req.SetCanonical(hXForwardedHost, req.Host())
	}
	proto := vHTTP
	if x.Listener != nil && x.Listener.TLS {
		proto = vHTTPS
	}
	if !x.PeerTrusted || !f.Has(protocol.HasXForwardedProto) {
		if f.Has(protocol.HasXForwardedProto) {
			req.DelBytes(hXForwardedProto)
		}
		req.SetCanonical(hXForwardedProto, proto)
	}
	if !x.PeerTrusted {
		if f.Has(protocol.HasXForwardedPort) {
			req.DelBytes(hXForwardedPort)
		}
		if f.Has(protocol.HasXForwardedPrefix) {
			req.DelBytes(hXForwardedPrefix)
		}
		if f.Has(protocol.HasForwarded) {
			req.DelBytes(hForwarded)
		}
	}
	if !x.PeerTrusted || !f.Has(protocol.HasForwarded) {
		// RFC 7239: the node that connected to the gateway and the scheme it used. An IPv6
		// address is quoted and bracketed.
		buf = append(x.scratch[:0], "for="...)
		if x.Peer.Is6() {
			buf = append(buf, `"[`...)
			buf = x.Peer.AppendTo(buf)
			buf = append(buf, `]"`...)
		} else {
			buf = x.Peer.AppendTo(buf)
		}
		buf = append(buf, ";proto="...)
		buf = append(buf, proto...)
		x.scratch = buf
		req.SetCanonical(hForwarded, buf)
	}
}

// setForwardedPrefix tells the upstream which path prefix the route stripped, so it can build
// links that work through the gateway (Traefik's convention). A trusted proxy's own prefix
// comes first; an untrusted client's was already deleted.
func setForwardedPrefix(x *Exchange, stripped []byte) {
	req := &x.Ctx.Request.Header
	if x.PeerTrusted && x.Facts.Has(protocol.HasXForwardedPrefix) {
		buf := append(x.scratch[:0], req.PeekBytes(hXForwardedPrefix)...)
		buf = append(buf, stripped...)
		x.scratch = buf
		req.DelBytes(hXForwardedPrefix)
		req.SetCanonical(hXForwardedPrefix, buf)
		return
	}
	req.SetCanonical(hXForwardedPrefix, stripped)
}

// maxRequestIDLen bounds an accepted X-Request-ID; longer or odd ones are replaced.
const maxRequestIDLen = 128

// ensureRequestID keeps the client's X-Request-ID when it is short and made of safe characters,
// and otherwise generates one (32 hex digits). The id is forwarded and echoed on the response.
func ensureRequestID(x *Exchange, raw []byte) {
	if x.Facts.Has(protocol.HasXRequestID) {
		id := x.Facts.RequestID.Of(raw)
		if validRequestID(id) {
			x.RequestID = id
			return
		}
		x.Ctx.Request.Header.DelBytes(hXRequestID)
	}
	const hex = "0123456789abcdef"
	a, b := rand.Uint64(), rand.Uint64()
	for i := range 16 {
		x.idBuf[i] = hex[(a>>(60-4*i))&0xF]
		x.idBuf[16+i] = hex[(b>>(60-4*i))&0xF]
	}
	x.RequestID = x.idBuf[:]
	x.Ctx.Request.Header.SetCanonical(hXRequestID, x.RequestID)
}

func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '=' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// applyRequestOps applies a route's request header changes.
func applyRequestOps(h *fasthttp.RequestHeader, ops *HeaderOps) {
	for _, k := range ops.Remove {
		h.DelBytes(k)
	}
	for _, kv := range ops.Set {
		h.DelBytes(kv.Key) // every copy, then one value
		h.SetCanonical(kv.Key, kv.Value)
	}
	for _, kv := range ops.Add {
		h.AddBytesKV(kv.Key, kv.Value)
	}
}

// applyResponseOps applies a route's response header changes.
func applyResponseOps(h *fasthttp.ResponseHeader, ops *HeaderOps) {
	for _, k := range ops.Remove {
		h.DelBytes(k)
	}
	for _, kv := range ops.Set {
		h.DelBytes(kv.Key)
		h.SetCanonical(kv.Key, kv.Value)
	}
	for _, kv := range ops.Add {
		h.AddBytesKV(kv.Key, kv.Value)
	}
}

// Response hop-by-hop header bits.
const (
	respConnection uint8 = 1 << iota
	respKeepAlive
	respProxy
	respTE
	respTrailer
	respUpgrade
)

// stripResponseHopByHop removes hop-by-hop headers from an upstream response before it goes to
// the client, and clears the upstream's "Connection: close": that was about the upstream
// connection, which the transport has already handled.
func stripResponseHopByHop(h *fasthttp.ResponseHeader) { stripResponse(h, false) }

// stripResponseHopByHopKeepTrailer is stripResponseHopByHop for a client that receives trailers
// (HTTP/2): the Trailer announcement stays, so the trailer fields that follow the body do too.
func stripResponseHopByHopKeepTrailer(h *fasthttp.ResponseHeader) { stripResponse(h, true) }

func stripResponse(h *fasthttp.ResponseHeader, keepTrailer bool) {
	h.ResetConnectionClose()
	var found uint8
	var proxyNames [4][]byte
	nProxy := 0
	for k := range h.All() {
		switch len(k) {
		case 2:
			if protocol.EqualFold(k, "te") {
				found |= respTE
			}
		case 7:
			switch {
			case protocol.EqualFold(k, "trailer"):
				found |= respTrailer
			case protocol.EqualFold(k, "upgrade"):
				found |= respUpgrade
			}
		case 10:
			switch {
			case protocol.EqualFold(k, "connection"):
				found |= respConnection
			case protocol.EqualFold(k, "keep-alive"):
				found |= respKeepAlive
			}
		}
		if len(k) >= 5 && protocol.EqualFold(k[:5], "proxy") && (len(k) == 5 || k[5] == '-') && nProxy < len(proxyNames) {
			found |= respProxy
			proxyNames[nProxy] = k
			nProxy++
		}
	}
	if found == 0 {
		return
	}
	if found&respConnection != 0 {
		forEachToken(h.PeekBytes(hConnection), h.DelBytes)
		h.DelBytes(hConnection)
	}
	if found&respKeepAlive != 0 {
		h.DelBytes(hKeepAlive)
	}
	if found&respTE != 0 {
		h.DelBytes(hTE)
	}
	if found&respTrailer != 0 && !keepTrailer {
		h.DelBytes(hTrailer)
	}
	if found&respUpgrade != 0 {
		h.DelBytes(hUpgrade)
	}
	for _, name := range proxyNames[:nProxy] {
		h.DelBytes(name)
	}
}
