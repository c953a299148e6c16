package proxy

import (
	"bufio"
	"bytes"
	"net"
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
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		defer t.TunnelClosed()
		// Registered before the client learns of the upgrade, so a reload that follows cannot
		// miss it.
		tun := websocket.New(client, client, conn, br, policy.Limits)
		o := tunnels.add(routeName, t, tun, policy.CloseGrace)
		defer tunnels.remove(o)
		_ = client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Write(head); err != nil {
			conn.Close()
			return
		}
		tun.Run()
	})
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
