package proxy

import (
	"bytes"
	"fmt"
	"net"

	"github.com/archway-gateway/archway/gateway/router"
	"github.com/valyala/fasthttp"
)

// ListenerPolicy is what the request path does differently on one listener. A snapshot holds one
// per configured listener, in configuration order; a request finds its own by the index its
// server was started with (the list of listeners cannot change without a restart).
type ListenerPolicy struct {
	Name string
	// TLS: requests arrive over HTTPS; upstreams are told proto https.
	TLS bool
	// Table routes the listener's requests when some route names listeners; nil means the
	// snapshot's table.
	Table *router.Table[*Route]
	// RedirectHTTPS answers every request with a 308 to the same URL over HTTPS, on
	// RedirectPort (":8443", or empty for 443).
	RedirectHTTPS bool
	RedirectPort  []byte
	// HSTS is the Strict-Transport-Security value for responses lacking one; nil sends none.
	HSTS []byte
	// ClientCertHeader carries the verified client certificate's subject upstream; client copies
	// are always removed. Nil when the listener has none.
	ClientCertHeader []byte
}

var (
	hStrictTransportSecurity = []byte("Strict-Transport-Security")
	acmeChallengePrefix      = []byte("/.well-known/acme-challenge/")
)

var errNoHostToRedirect = fmt.Errorf("%w: no Host header to redirect to", ErrBadRequest)

// clientSubjecter is a TLS connection that verified a client certificate.
type clientSubjecter interface {
	VerifiedClientSubject() []byte
}

// redirectHTTPS answers 308 with the request's URL on the HTTPS listener. ACME HTTP-01
// challenges are left to the routes: a certificate authority asks for them over plain HTTP.
func redirectHTTPS(x *Exchange, l *ListenerPolicy) bool {
	if bytes.HasPrefix(x.Path, acmeChallengePrefix) {
		return false
	}
	host := x.Ctx.Request.Header.Host()
	if len(host) == 0 {
		WriteError(x, errNoHostToRedirect)
		return true
	}
	buf := append(x.scratch[:0], "https://"...)
	buf = append(buf, hostWithoutPort(host)...)
	buf = append(buf, l.RedirectPort...)
	buf = append(buf, x.Path...)
	if len(x.Query) > 0 {
		buf = append(buf, '?')
		buf = append(buf, x.Query...)
	}
	x.scratch = buf
	x.Ctx.Response.SetStatusCode(fasthttp.StatusPermanentRedirect)
	x.Ctx.Response.Header.SetCanonical(hLocation, buf)
	return true
}

// hostWithoutPort strips a port from a Host value ("shop.test:80", "[::1]:80").
func hostWithoutPort(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[:i+1]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// setClientCertHeader replaces every client copy of the listener's client certificate header
// with the subject the TLS handshake verified, if any.
func setClientCertHeader(x *Exchange, l *ListenerPolicy) {
	hdr := &x.Ctx.Request.Header
	hdr.DelBytes(l.ClientCertHeader)
	if c, ok := unwrapConn(x.Ctx.Conn()).(clientSubjecter); ok {
		if s := c.VerifiedClientSubject(); len(s) > 0 {
			hdr.SetCanonical(l.ClientCertHeader, s)
		}
	}
}

// unwrapConn looks through connection wrappers (the request head check) for the first
// connection that knows its client certificate.
func unwrapConn(c net.Conn) net.Conn {
	for {
		if _, ok := c.(clientSubjecter); ok {
			return c
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}
