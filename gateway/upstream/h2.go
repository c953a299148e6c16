package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

// h2Client reaches one target over HTTP/2: cleartext with prior knowledge (h2c) or TLS with
// ALPN h2. One net/http Transport per target, limited to HTTP/2 (its bundled HTTP/2 client,
// what golang.org/x/net/http2's Transport now defers to), keeps its connections, and every
// request is a stream multiplexed on them; a connection at the server's stream limit makes the
// transport open another. Only targets of h2c and h2 upstreams have one, so an http1 upstream
// pays nothing for it.
type h2Client struct {
	tr     *http.Transport
	scheme string
}

// h2 connection health: a connection that has read nothing for h2ReadIdle is pinged, and closed
// (failing its streams) when the ping is not answered within h2PingTimeout. Without it a target
// that vanished without a FIN or RST would hold its streams until their deadlines.
const (
	h2ReadIdle    = 30 * time.Second
	h2PingTimeout = 10 * time.Second
)

// dialFailed marks an error of opening the connection, so that a failed round trip can tell a
// request that never left from one that broke on the way.
type dialFailed struct{ err error }

func (e *dialFailed) Error() string { return e.err.Error() }
func (e *dialFailed) Unwrap() error { return e.err }

func newH2Client(t *Target, s Settings) *h2Client {
	c := &h2Client{scheme: "http"}
	dial := func(ctx context.Context) (net.Conn, error) {
		timeout := s.ConnectTimeout
		if d, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(d))
		}
		if timeout <= 0 {
			return nil, &dialFailed{errDialNoTime}
		}
		var conn net.Conn
		var err error
		if s.Dial != nil {
			conn, err = s.Dial(t.Addr, timeout)
		} else {
			d := net.Dialer{Timeout: timeout}
			conn, err = d.DialContext(ctx, "tcp", t.Addr)
		}
		if err != nil {
			return nil, &dialFailed{err}
		}
		return t.countConn(conn), nil
	}
	var protocols http.Protocols
	tr := &http.Transport{
		DisableCompression: true, // the client's Accept-Encoding and the upstream's encoding pass through
		IdleConnTimeout:    s.IdleTimeout,
		HTTP2:              &http.HTTP2Config{SendPingTimeout: h2ReadIdle, PingTimeout: h2PingTimeout},
	}
	if s.Protocol == config.ProtocolH2 {
		c.scheme = "https"
		protocols.SetHTTP2(true)
		tr.TLSClientConfig = s.h2TLSConfig(t.Addr)
		// The handshake is done here, on the counted connection, so that its failure is a
		// connection failure (nothing sent) and a target that does not offer h2 is refused.
		tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			raw, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, tr.TLSClientConfig.Clone())
			if err := conn.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				return nil, &dialFailed{fmt.Errorf("tls handshake: %w", err)}
			}
			if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
				_ = conn.Close()
				return nil, &dialFailed{fmt.Errorf("tls handshake: the target negotiated %q, not h2", p)}
			}
			return conn, nil
		}
	} else {
		protocols.SetUnencryptedHTTP2(true)
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	}
	tr.Protocols = &protocols
	c.tr = tr
	return c
}

// countConn counts a new HTTP/2 connection in the target's dials and open connections, as the
// HTTP/1.1 pool does, until it closes.
func (t *Target) countConn(c net.Conn) net.Conn {
	t.pool.dials.Add(1)
	t.pool.open.Add(1)
	return &countedConn{Conn: c, open: &t.pool.open}
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// HTTP2 reports whether the upstream's targets are reached over HTTP/2 (protocol h2c or h2).
func (u *Upstream) HTTP2() bool { return u.settings.Protocol.HTTP2() }

// H2RoundTrip is what one HTTP/2 round trip needs beyond RoundTrip's deadline and clock.
type H2RoundTrip struct {
	// Context is cancelled when the client is gone; nil: none is known.
	Context context.Context
	// Body is the request body when it streams from the client; nil sends req's body bytes.
	Body io.Reader
	// ClientBody reports why reading Body failed, if it did: the client's fault, not the target's.
	ClientBody interface{ Err() error }
	// TE is set when the client sent "TE: trailers" (gRPC requires it); the hop-by-hop strip
	// removed it from req.
	TE bool
	// GRPC is set for a gRPC request: the response announces the grpc-status and grpc-message
	// trailers, and a failure after the response began ends it with them (BodyError).
	GRPC bool
	// Trailer, with Body, is the request's trailer section, sent after Body ends. Its values may
	// be filled in while Body is read (a client's HTTP/2 trailers arrive after its body); the
	// names must be there before the request is sent.
	Trailer http.Header
	// BodyError, when set, is called when the response body fails after the response began:
	// it may write trailers into h describing err and report true, ending the body cleanly
	// instead of breaking it. It must not keep h.
	BodyError func(err error, h *fasthttp.ResponseHeader) bool
}

// DoH2 forwards req to t over HTTP/2 and leaves the response in resp, its body a stream that
// ends with the upstream's trailers copied into resp's header (as fasthttp trailers) and holds
// the stream, counted in t's in-flight requests for least_conn, until the body is read or
// closed. The request body streams while the response does, so client-, server- and
// bidirectional-streaming calls all work. A gRPC status of UNAVAILABLE (14) from the target
// counts toward max_fails like a transport error.
//
// DoH2 allocates (an http.Request and a stream per call); HTTP/1.1 upstreams never come here.
func (u *Upstream) DoH2(t *Target, req *fasthttp.Request, resp *fasthttp.Response, x *RoundTrip, h *H2RoundTrip) error {
	c := t.h2
	if c == nil {
		return &Error{Kind: KindProtocol, Addr: t.Addr, Err: errors.New("target has no HTTP/2 client")}
	}
	parent := h.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithDeadline(parent, x.Deadline)
	hr, err := newH2Request(ctx, c.scheme, t.Addr, req, h)
	if err != nil {
		cancel()
		return &Error{Kind: KindProtocol, Addr: t.Addr, Err: err}
	}

	t.inflight.Add(1)
	t.requests.Add(1)
	res, err := c.tr.RoundTrip(hr)
	if err != nil {
		cancel()
		t.inflight.Add(-1)
		e := classifyH2(t.Addr, err, ctx, parent, h.ClientBody)
		if e.Kind.countsAsFailure() {
			t.recordFailure(x.Now, u.passive)
		}
		return e
	}

	if res.StatusCode < 100 || res.StatusCode > 999 {
		// x/net takes any number for :status; the gateway takes what HTTP/1.1 allows.
		_ = res.Body.Close()
		cancel()
		t.inflight.Add(-1)
		t.recordFailure(x.Now, u.passive)
		return &Error{Kind: KindProtocol, Addr: t.Addr, Err: errStatus}
	}
	resp.SetStatusCode(res.StatusCode)
	hdr := &resp.Header
	for k, vs := range res.Header {
		if k == "Content-Length" {
			continue // fasthttp frames the body itself
		}
		for _, v := range vs {
			hdr.Add(k, v)
		}
	}
	grpcStatus := res.Header.Get("Grpc-Status")
	if grpcStatus == grpcUnavailable {
		t.recordFailure(x.Now, u.passive) // a trailers-only UNAVAILABLE
	}
	// A response whose HEADERS frame ended the stream (gRPC's trailers-only answer) has a
	// ContentLength of 0 and an empty body: its status fields are in the head.
	if x.Head || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified || res.ContentLength == 0 {
		resp.SkipBody = x.Head || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified
		_ = res.Body.Close()
		cancel()
		t.inflight.Add(-1)
		if grpcStatus != grpcUnavailable {
			t.recordSuccess()
		}
		t.closeIfDrained()
		return nil
	}
	if res.ContentLength > u.settings.MaxResponseBytes {
		_ = res.Body.Close()
		cancel()
		t.inflight.Add(-1)
		return &Error{Kind: KindTooLarge, Addr: t.Addr, Err: errTooLarge}
	}
	// Announce the trailers the upstream declared and, for gRPC, the two every call ends
	// with: an HTTP/1.1 client reads the names in the head, before the body.
	for k := range res.Trailer {
		_ = hdr.AddTrailer(k)
	}
	if h.GRPC {
		_ = hdr.AddTrailer("Grpc-Status")
		_ = hdr.AddTrailer("Grpc-Message")
	}
	b := &h2Body{
		t: t, u: u, res: res, resp: resp, cancel: cancel, now: x.Now,
		ctx: ctx, parent: parent, client: h.ClientBody, bodyError: h.BodyError,
	}
	resp.SetBodyStream(b, int(max(res.ContentLength, -1)))
	return nil
}

const grpcUnavailable = "14"

// classifyH2 turns a failed HTTP/2 round trip into an *Error: a connection that could not be
// opened sent nothing; the deadline is a timeout; a client that went away or whose body broke
// is the client's fault.
func classifyH2(addr string, err error, ctx, parent context.Context, client interface{ Err() error }) *Error {
	var df *dialFailed
	switch {
	case client != nil && client.Err() != nil:
		return &Error{Kind: KindClient, Addr: addr, Err: client.Err()}
	case parent.Err() != nil:
		return &Error{Kind: KindClient, Addr: addr, Err: fmt.Errorf("client went away: %w", parent.Err())}
	case errors.As(err, &df):
		return dialError(addr, df.err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err) || pastDeadline(ctx):
		// The target learnt the same deadline (grpc-timeout) and may have reset the stream
		// a moment before the gateway's own timer fired: a timeout either way.
		return &Error{Kind: KindTimeout, Addr: addr, Err: err}
	}
	return &Error{Kind: KindRead, Addr: addr, Err: err}
}

func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func newH2Request(ctx context.Context, scheme, addr string, req *fasthttp.Request, h *H2RoundTrip) (*http.Request, error) {
	target := string(req.Header.RequestURI())
	path, query, _ := strings.Cut(target, "?")
	u := &url.URL{Scheme: scheme, Host: addr, Opaque: path, RawQuery: query}
	hr := &http.Request{
		Method:     string(req.Header.Method()),
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     make(http.Header, req.Header.Len()),
		Host:       string(req.Header.Host()),
	}
	if len(hr.Method) == 0 {
		hr.Method = http.MethodGet
	}
	for k, v := range req.Header.All() {
		switch string(k) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		hr.Header.Add(string(k), string(v))
	}
	if h.TE {
		hr.Header.Set("Te", "trailers")
	}
	switch {
	case h.Body != nil:
		hr.Body = newH2RequestBody(h.Body)
		if len(h.Trailer) > 0 {
			hr.Trailer = h.Trailer
		}
		hr.ContentLength = int64(req.Header.ContentLength())
		if hr.ContentLength < 0 {
			hr.ContentLength = -1
		}
	case len(req.Body()) > 0:
		body := req.Body()
		hr.ContentLength = int64(len(body))
		hr.Body = io.NopCloser(strings.NewReader(string(body)))
		// The transport may retry a request on a new connection after a GOAWAY: it needs the
		// body again.
		hr.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }
	}
	return hr.WithContext(ctx), nil
}

// h2RequestBody streams the client's body to the target. (Request trailers are not carried:
// gRPC clients send none, and the client's request header may be reused by the time the body
// ends.)
//
// The transport reads it on a goroutine of its own, and when the stream fails (the target died,
// the deadline passed) it closes the body and waits for that goroutine to finish before it
// fails the response body: a Read blocked on a client that is waiting for the response would
// hold the call until the client gave up. So the client's body is read by a pump goroutine, and
// Read waits for the pump or for Close, whichever comes first. The pump ends at the client
// body's end or error, or at Close once its read in progress returns (the HTTP/2 entry ends the
// client's body when the exchange is over).
type h2RequestBody struct {
	r io.Reader

	start  sync.Once
	chunks chan h2Chunk
	closed chan struct{}
	close  sync.Once
	rest   []byte // of the chunk being handed out
	err    error  // the client body's final result, once seen
}

type h2Chunk struct {
	data []byte
	err  error
}

var errRequestBodyClosed = errors.New("request body closed: the stream ended")

func newH2RequestBody(r io.Reader) *h2RequestBody {
	return &h2RequestBody{r: r, chunks: make(chan h2Chunk), closed: make(chan struct{})}
}

func (b *h2RequestBody) pump() {
	for {
		buf := make([]byte, 16<<10)
		n, err := b.r.Read(buf)
		select {
		case b.chunks <- h2Chunk{buf[:n], err}:
		case <-b.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (b *h2RequestBody) Read(p []byte) (int, error) {
	for len(b.rest) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		b.start.Do(func() { go b.pump() })
		select {
		case c := <-b.chunks:
			b.rest, b.err = c.data, c.err
		case <-b.closed:
			return 0, errRequestBodyClosed
		}
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

// Close stops the body: the transport closes it when the stream ends, whatever the client is
// still sending; a Read waiting for the client returns at once.
func (b *h2RequestBody) Close() error {
	b.close.Do(func() { close(b.closed) })
	return nil
}

// h2Body is the response body of one HTTP/2 stream, read by fasthttp (or the HTTP/2 entry) as
// the client's response body. At its end it copies the upstream's trailers into the response
// header and ends the stream's accounting; Close ends it early (client gone).
type h2Body struct {
	t         *Target
	u         *Upstream
	res       *http.Response
	resp      *fasthttp.Response
	cancel    context.CancelFunc
	now       int64
	ctx       context.Context
	parent    context.Context
	client    interface{ Err() error }
	bodyError func(err error, h *fasthttp.ResponseHeader) bool
	finished  atomic.Bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	if b.finished.Load() {
		return 0, io.EOF
	}
	n, err := b.res.Body.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		hdr := &b.resp.Header
		for k, vs := range b.res.Trailer {
			if len(vs) == 0 {
				continue
			}
			_ = hdr.AddTrailer(k)
			hdr.Del(k)
			for _, v := range vs {
				hdr.Add(k, v)
			}
		}
		if b.res.Trailer.Get("Grpc-Status") == grpcUnavailable {
			b.t.recordFailure(b.now, b.u.passive)
		} else {
			b.t.recordSuccess()
		}
		b.finish()
		return n, io.EOF
	}
	e := classifyH2(b.t.Addr, err, b.ctx, b.parent, b.client)
	if e.Kind.countsAsFailure() {
		b.t.recordFailure(b.now, b.u.passive)
	}
	b.finish()
	if b.bodyError != nil && b.bodyError(e, &b.resp.Header) {
		return n, io.EOF
	}
	return n, e
}

// Close ends the stream, resetting it at the target when it was not read to its end.
func (b *h2Body) Close() error {
	err := b.res.Body.Close()
	b.finish()
	return err
}

func (b *h2Body) finish() {
	if b.finished.Swap(true) {
		return
	}
	b.cancel()
	b.t.inflight.Add(-1)
	b.t.closeIfDrained()
}

// closeIfDrained closes the idle HTTP/2 connections of a target that left the configuration,
// once its last stream ended.
func (t *Target) closeIfDrained() {
	if t.h2 != nil && t.pool.draining.Load() && t.inflight.Load() == 0 {
		t.h2.tr.CloseIdleConnections()
	}
}

// drain stops keeping connections: see pool.drain. HTTP/2 connections close when idle.
func (t *Target) drain() {
	t.pool.drain()
	if t.h2 != nil {
		t.h2.tr.CloseIdleConnections()
	}
}

// h2TLSConfig is the client TLS configuration for an h2 target at addr: the upstream's own
// `tls` settings when it has them (CA, server_name, client certificate, as for HTTP/1.1 over
// TLS), else the system's roots (or RootCAs) and the target's host as the server name. ALPN
// offers h2 only: a target that cannot speak it is refused at the handshake.
func (s Settings) h2TLSConfig(addr string) *tls.Config {
	var c *tls.Config
	if s.TLS != nil {
		c = TargetTLSConfig(s.TLS, addr)
	} else {
		c = &tls.Config{ServerName: config.ServerName(addr), MinVersion: tls.VersionTLS12, RootCAs: s.RootCAs}
	}
	c.NextProtos = []string{"h2"}
	return c
}
