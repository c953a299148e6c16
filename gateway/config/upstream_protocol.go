package config

import (
	"net"
	"slices"
	"strings"
)

// UpstreamProtocol is how the gateway speaks to an upstream's targets.
type UpstreamProtocol string

const (
	// ProtocolHTTP1 is HTTP/1.1 over the gateway's own keep-alive pool: the default.
	ProtocolHTTP1 UpstreamProtocol = "http1"
	// ProtocolH2C is cleartext HTTP/2 with prior knowledge (RFC 9113, section 3.3): the usual
	// gRPC service inside a cluster.
	ProtocolH2C UpstreamProtocol = "h2c"
	// ProtocolH2 is HTTP/2 over TLS, negotiated with ALPN h2. The target's certificate is
	// verified against the system roots for the host part of the target address.
	ProtocolH2 UpstreamProtocol = "h2"
)

var upstreamProtocols = []string{string(ProtocolHTTP1), string(ProtocolH2C), string(ProtocolH2)}

// DefaultUpstreamProtocol is the protocol of an upstream that names none.
const DefaultUpstreamProtocol = ProtocolHTTP1

// HTTP2 reports whether the upstream is reached over HTTP/2 (h2c or h2).
func (p UpstreamProtocol) HTTP2() bool { return p == ProtocolH2C || p == ProtocolH2 }

// ServerName is the name an h2 upstream's certificate is verified for: the host of the target
// address.
func ServerName(target string) string {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return target
	}
	return host
}

// applyProtocolDefaults leaves an unset protocol empty, which means http1: the effective
// configuration then shows protocol only for HTTP/2 upstreams, as it was before they existed.
func (u *Upstream) applyProtocolDefaults() {
	if u.Protocol == DefaultUpstreamProtocol {
		u.Protocol = ""
	}
}

// upstreamProtocol validates an upstream's protocol and the settings that depend on it: a gRPC
// health check needs HTTP/2 to the target.
func (v *validator) upstreamProtocol(p string, u *Upstream) {
	if u.Protocol != "" && !slices.Contains(upstreamProtocols, string(u.Protocol)) {
		v.errorf(p+".protocol", "unknown protocol %q; one of %s%s", u.Protocol, strings.Join(upstreamProtocols, ", "), suggest(string(u.Protocol), upstreamProtocols))
		return
	}
	if hc := u.HealthCheck; hc != nil && hc.GRPCService != nil && !u.Protocol.HTTP2() {
		v.errorf(p+".health_check.grpc_service", "needs protocol h2c or h2 (gRPC runs over HTTP/2); the upstream speaks http1")
	}
	// h2c is cleartext by definition: TLS settings (or https:// targets) with it are a
	// contradiction that would otherwise be silently ignored.
	if u.Protocol == ProtocolH2C && u.TLS != nil {
		v.errorf(p+".protocol", "h2c is HTTP/2 without TLS, but the upstream has TLS settings or https:// targets; use protocol h2")
	}
}
