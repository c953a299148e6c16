package protocol

// Wire is the HTTP version a client's request arrived in: the protocol label of metrics and the
// protocol field of the access log.
type Wire uint8

const (
	// WireHTTP1 is HTTP/1.1 (and HTTP/1.0) served by fasthttp.
	WireHTTP1 Wire = iota
	// WireHTTP2 is an HTTP/2 stream, over TLS (h2) or cleartext (h2c).
	WireHTTP2
	// NumWires is the number of Wire values.
	NumWires
)

// WireNames are the label values, indexed by Wire.
var WireNames = [NumWires]string{WireHTTP1: "HTTP/1.1", WireHTTP2: "HTTP/2"}

// String is the label value.
func (w Wire) String() string {
	if w < NumWires {
		return WireNames[w]
	}
	return "unknown"
}
