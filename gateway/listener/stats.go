package listener

import (
	"strings"
	"sync/atomic"
)

// Reason is why a TLS handshake or a PROXY protocol connection was refused; it labels metrics.
type Reason uint8

// Handshake failure reasons.
const (
	ReasonOther             Reason = iota
	ReasonNotTLS                   // plain HTTP (or anything else) on a TLS port
	ReasonProtocolVersion          // the client offered only TLS versions below the minimum
	ReasonNoSharedCipher           // no cipher suite or curve in common
	ReasonClientCertificate        // a required client certificate missing, or one that did not verify
	ReasonClientAlert              // the client aborted with an alert (e.g. it does not trust the certificate)
	ReasonTimeout                  // the handshake did not finish within server.read_timeout
	ReasonClosed                   // the client closed the connection during the handshake
	numReasons
)

var reasonNames = [numReasons]string{"other", "not_tls", "protocol_version", "no_shared_cipher", "client_certificate", "client_alert", "timeout", "closed"}

func (r Reason) String() string { return reasonNames[r] }

// PROXY protocol refusal reasons.
const (
	ProxyUntrusted = iota // the peer is not in trusted_proxies
	ProxyMalformed        // missing, malformed or unsupported PROXY header
	numProxyReasons
)

// ProxyReasonNames label archway_proxy_protocol_rejected_total.
var ProxyReasonNames = [numProxyReasons]string{"untrusted", "malformed"}

// Stats are a listener's connection counters, read by the gateway's metrics at scrape time.
type Stats struct {
	Handshakes      atomic.Uint64
	HandshakeErrors [numReasons]atomic.Uint64
	ProxyRejected   [numProxyReasons]atomic.Uint64
}

func (s *Stats) handshakeFailed(r Reason) { s.HandshakeErrors[r].Add(1) }

// EachHandshakeError calls fn for every reason with its count.
func (s *Stats) EachHandshakeError(fn func(reason string, n uint64)) {
	for r := range numReasons {
		fn(r.String(), s.HandshakeErrors[r].Load())
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
