package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/archway-gateway/archway/gateway/websocket"
	"github.com/valyala/fasthttp"
)

// WebSocketPolicy is a route's upgrade settings.
type WebSocketPolicy struct {
	Limits     websocket.Limits
	CloseGrace time.Duration
}

// maxRefusalBody bounds the body of a non-101 answer to an upgrade: an error page.
const maxRefusalBody = 1 << 20

var (
	hUpgradeValue    = []byte("websocket")
	hConnUpgradeOnly = []byte("Upgrade")
)

// isWebSocketUpgrade reports whether the request asks for a WebSocket upgrade: GET, HTTP/1.1,
// "Connection: upgrade" and "Upgrade: websocket" (RFC 6455, section 4.1).
func isWebSocketUpgrade(x *Exchange) bool {
	h := &x.Ctx.Request.Header
	if x.Method != protocol.MethodGet || !h.IsHTTP11() || !x.Facts.Has(protocol.HasUpgrade|protocol.HasConnection) {
		return false
	}
	if !h.ConnectionUpgrade() {
		return false
	}
	found := false
	forEachToken(h.PeekBytes(hUpgrade), func(tok []byte) {
		if protocol.EqualFold(tok, "websocket") {
			found = true
		}
	})
	return found
}

// serveUpgrade carries a WebSocket handshake to a target over a connection of its own and, when
// the target answers 101, hands the client connection and that upstream connection to a tunnel.
// Any other answer is relayed as a normal response.
func (f *Forwarder) serveUpgrade(x *Exchange, raw []byte) {
	r := f.Route
	ctx := x.Ctx
	req := &ctx.Request
	stripRequestHopByHop(&req.Header, &x.Facts, raw)
	req.Header.SetBytesKV(hUpgrade, hUpgradeValue)
	req.Header.SetBytesKV(hConnection, hConnUpgradeOnly)
	setForwardedHeaders(x, raw)
	if len(r.StripPrefix) > 0 {
		setForwardedPrefix(x, r.StripPrefix)
	}
	if !r.RequestHeaders.Empty() {
		applyRequestOps(&req.Header, &r.RequestHeaders)
	}
	req.SetRequestURIBytes(upstreamTarget(x, r))

	now := time.Now()
	deadline := now.Add(r.Timeout)
	t, _ := r.Upstream.Pick(0, 0, now.UnixNano())
	if t == nil {
		WriteError(x, ErrNoTarget)
		return
	}
	x.Target, x.Attempts = t, 1
	conn, err := t.DialTunnel(deadline, now.UnixNano(), r.Upstream)
	if err != nil {
		WriteError(x, err)
		return
	}
	upgraded := false
	defer func() {
		if !upgraded {
			conn.Close()
			t.TunnelClosed()
		}
	}()
	_ = conn.SetDeadline(deadline)
	if tr := x.Snapshot.Tracer; tr != nil {
		x.traceUpstream(tr, t)
		defer func() { x.endAttempt(ctx.Response.StatusCode(), x.Err) }()
	}
	bw := bufio.NewWriterSize(conn, 4096)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		WriteError(x, &upstream.Error{Kind: upstream.KindWrite, Addr: t.Addr, Err: err})
		return
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp := &ctx.Response
	if err := resp.Header.Read(br); err != nil {
		kind := upstream.KindRead
		if ne, ok := err.(net.Error); ok && ne.Timeout() || err == fasthttp.ErrTimeout {
			kind = upstream.KindTimeout
		}
		WriteError(x, &upstream.Error{Kind: kind, Addr: t.Addr, Err: err})
		return
	}
	x.UpstreamDuration = time.Since(now)
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols || !bytes.EqualFold(resp.Header.PeekBytes(hUpgrade), hUpgradeValue) {
		// Refused (401, 404, 426 ...): relay the answer. The connection is closed after it.
		if err := resp.ReadBody(br, maxRefusalBody); err != nil {
			WriteError(x, &upstream.Error{Kind: upstream.KindRead, Addr: t.Addr, Err: err})
			return
		}
		stripResponseHopByHop(&resp.Header)
		return
	}

	// Upgraded. The 101 head goes to the client from the hijack handler, which runs after this
	// handler returns and the exchange is recycled: everything it needs is copied now.
	head := upgradeHead(resp, x.RequestID)
	upgraded = true
	tunnels, routeName, policy := x.Snapshot.Tunnels, r.Name, r.WebSocket
	upstreamEnd := websocket.End{Conn: conn, Pending: takeBuffered(br)}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(hijacked net.Conn) {
		client, pending := detachClient(hijacked)
		// Registered before the client learns of the upgrade, so a reload that follows cannot
		// miss it.
		tun := websocket.New(clientEnd(client, pending), upstreamEnd, policy.Limits, tunnels.poller)
		o := tunnels.add(routeName, t, tun, policy.CloseGrace)
		closed := func(websocket.Stats) {
			tunnels.remove(o)
			t.TunnelClosed()
		}
		_ = client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Write(head); err != nil {
			_ = client.Close()
			_ = conn.Close()
			closed(websocket.Stats{})
			return
		}
		if tunnels.keepsHijacked.Load() {
			// The server leaves the connection open: the tunnel's own goroutines carry on, and
			// this handler returns, so fasthttp frees the request's state now.
			tun.Start(closed)
			return
		}
		closed(tun.Run()) // the server closes the client connection when the handler returns
	})
}

// takeBuffered copies what br read past the upstream's 101 head (frames the upstream sent at
// once); br itself is dropped, the tunnel reads the connection.
func takeBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// drainDeadline is a read deadline long past: a read with it returns what is already buffered
// above the socket and never waits.
var drainDeadline = time.Unix(1, 0)

// detachClient takes the client connection from fasthttp's hijack wrapper, which reads through
// the connection's read buffer (max_header_bytes). What that buffer holds (frames sent right
// behind the upgrade request) is read out first, with a read that cannot wait, and becomes the
// tunnel's pending bytes; the tunnel then reads the connection itself, and the buffer goes back
// to fasthttp with the request's state. Below the wrapper, the request-head scanner has stopped
// at the upgrade (its held-back bytes come out in the same drain), so it is unwrapped too: the
// tunnel then sees the socket, when nothing else wraps it, and waits on its descriptor.
func detachClient(hijacked net.Conn) (net.Conn, []byte) {
	u, ok := hijacked.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return hijacked, nil
	}
	_ = hijacked.SetReadDeadline(drainDeadline)
	var pending []byte
	chunk := make([]byte, 512)
	for {
		n, err := hijacked.Read(chunk)
		pending = append(pending, chunk[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	_ = hijacked.SetReadDeadline(time.Time{})
	c := u.UnsafeConn()
	if pc, ok := c.(*protocol.Conn); ok {
		c = pc.NetConn()
	}
	return tunnelClient{c}, pending
}

// clientEnd is the tunnel's client side: a wss:// client's connection is read through TLS, and
// the socket under it is given for the tunnel to wait on.
func clientEnd(client net.Conn, pending []byte) websocket.End {
	under := client
	if tc, ok := client.(tunnelClient); ok {
		under = tc.Conn
	}
	return websocket.End{Conn: client, Pending: pending, Readable: protocol.SocketUnderTLS(under)}
}

// tunnelClient is the client connection as the tunnel sees it. It has no CloseWrite, as the
// hijack wrapper had none: an upstream that ends its side ends the tunnel, rather than
// half-closing the client's. It passes the socket's descriptor on when the wrappers below
// expose it.
type tunnelClient struct{ net.Conn }

func (c tunnelClient) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// upgradeHead serialises the upstream's 101 response for the client, with the request id.
func upgradeHead(resp *fasthttp.Response, requestID []byte) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for k, v := range resp.Header.All() {
		if protocol.EqualFold(k, "x-request-id") || protocol.EqualFold(k, "content-length") {
			continue
		}
		b.Write(k)
		b.WriteString(": ")
		b.Write(v)
		b.WriteString("\r\n")
	}
	if len(requestID) > 0 {
		b.WriteString("X-Request-Id: ")
		b.Write(requestID)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
