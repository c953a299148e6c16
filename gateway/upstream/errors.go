package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/valyala/fasthttp"
)

// Kind classifies an upstream failure. The proxy maps kinds to HTTP statuses (in one place) and
// decides from them whether a request may be retried.
type Kind uint8

const (
	// KindConnect: the connection could not be opened. Nothing was sent.
	KindConnect Kind = iota + 1
	// KindConnectTimeout: opening the connection took longer than connect_timeout.
	KindConnectTimeout
	// KindNoFreeConns: every connection slot stayed busy for queue_timeout. Nothing was sent.
	KindNoFreeConns
	// KindStale: a reused keep-alive connection turned out closed by the upstream before any
	// response byte arrived; the upstream never processed the request.
	KindStale
	// KindWrite: sending the request failed part way.
	KindWrite
	// KindTimeout: the response did not arrive within the route's timeout.
	KindTimeout
	// KindRead: the connection broke while reading the response.
	KindRead
	// KindProtocol: the response was not valid HTTP/1.1 (or was a 101 on a plain request).
	KindProtocol
	// KindTooLarge: the response declared a body over max_response_bytes.
	KindTooLarge
	// KindClient: reading the client's request body failed while it was being sent (over the
	// size limit, broken, too slow). The client's fault, never counted against the target.
	KindClient
	// KindTLS: the TLS handshake with the target failed (its certificate is not trusted or does
	// not name it, no protocol in common, a client certificate refused). Nothing was sent.
	KindTLS
)

var kindNames = [...]string{"", "connect", "connect_timeout", "no_free_conns", "stale", "write", "timeout", "read", "protocol", "too_large", "client", "tls"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is an upstream failure of one target.
type Error struct {
	Kind Kind
	Addr string
	Err  error
	// Written is set when the request was written to the connection before it failed, so the
	// upstream may have received it.
	Written bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("upstream %s: %s: %v", e.Addr, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NotSent reports whether the upstream cannot have received the request, so that any method,
// POST included, may be retried on another target.
func (e *Error) NotSent() bool {
	switch e.Kind {
	case KindConnect, KindConnectTimeout, KindNoFreeConns, KindTLS:
		return true
	case KindStale:
		// Broken while writing to a connection the upstream had closed: it never read the
		// request. Broken after writing (EOF instead of a response): it may have.
		return !e.Written
	}
	return false
}

// countsAsFailure reports whether the failure counts toward max_fails (nginx's "error timeout").
func (k Kind) countsAsFailure() bool {
	switch k {
	case KindConnect, KindConnectTimeout, KindWrite, KindTimeout, KindRead, KindProtocol, KindTLS:
		return true
	}
	return false
}

var (
	errNoFreeConns = errors.New("no free connection within queue_timeout")
	errDialNoTime  = errors.New("request deadline passed before connecting")
	errUpgrade     = errors.New("101 Switching Protocols on a request that asked for no upgrade")
	errTooLarge    = errors.New("response body over max_response_bytes")
	errStatus      = errors.New("status code outside 100-999")
	errFieldName   = errors.New("a space in a response field name")
	errInterim     = errors.New("more than 5 interim (1xx) responses")
)

func dialError(addr string, err error) *Error {
	kind := KindConnect
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errDialNoTime) {
		kind = KindConnectTimeout
	}
	var he *handshakeError
	if kind == KindConnect && errors.As(err, &he) {
		kind = KindTLS
	}
	if errors.Is(err, errNoFreeConns) {
		kind = KindNoFreeConns
	}
	return &Error{Kind: kind, Addr: addr, Err: err}
}

// handshakeError is a TLS handshake with a target that failed after the TCP connection opened.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "handshake: " + e.err.Error() }

func (e *handshakeError) Unwrap() error { return e.err }

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isPeerClosed reports errors that mean the peer had closed the connection.
func isPeerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
