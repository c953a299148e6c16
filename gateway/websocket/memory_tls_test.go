//go:build linux && !race

// Like memory_test.go: Linux (the Poller), without the race detector.

package websocket

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"
)

// An idle wss tunnel: the client's side is TLS. Its socket is waited on in the poller like a
// plain one's (woken, the direction reads through crypto/tls), so an idle wss tunnel holds no
// goroutine either. Measured like TestIdleTunnelMemory, the outside client's TLS state in the
// same process taken out: after the tunnels idle, the clients' tls.Conns are dropped and what
// remains above the sockets is the gateway's share.
func TestIdleWssTunnelMemory(t *testing.T) {
	if !measuringChild(t, "TestIdleWssTunnelMemory", "an idle wss tunnel (") {
		return
	}
	n := tunnelsWithinLimit(t, 2000)
	type ends struct {
		client, upstream net.Conn // outside: the WebSocket client (TLS) and the upstream
		clientSide, up   net.Conn // the gateway's: the client's socket (TLS after the handshake), the upstream's
	}
	start := memoryInUse()
	conns := make([]ends, n)
	for i := range conns {
		c, cs := tcpPair(t)
		u, us := tcpPair(t)
		conns[i] = ends{c, u, cs, us}
	}
	sockets := memoryInUse()
	srvConf := &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}}
	cliConf := &tls.Config{InsecureSkipVerify: true}
	for i := range conns {
		e := &conns[i]
		e.client, e.clientSide = tlsOver(t, e.client, e.clientSide, srvConf, cliConf)
	}
	handshaken := memoryInUse()

	poller := testPoller(t)
	tunnels := make([]*Tunnel, n)
	done := make(chan Stats, n)
	msg := frame(true, 1, []byte("hello"), true)
	reply := frame(true, 1, []byte("hi"), false)
	for i, e := range conns {
		tunnels[i] = New(endOf(e.clientSide, nil), End{Conn: e.up}, Limits{IdleTimeout: time.Hour, MaxMessageBytes: 2 << 20}, poller)
		tunnels[i].Start(func(s Stats) { done <- s })
		if _, err := e.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		readFull(t, e.upstream, len(msg))
		_, _ = e.upstream.Write(reply)
		readFull(t, e.client, len(reply))
	}
	for i, tun := range tunnels {
		if tun.ReadsSockets() || !tun.Polled() {
			t.Fatalf("tunnel %d: reads the TLS connection's socket itself (%v), or cannot wait in the poller", i, tun.ReadsSockets())
		}
		waitIdle(t, tun)
	}
	waitArmed(t, poller, 2*n)
	idle := memoryInUse()

	// Drop the clients' tls.Conns (the outside ends, in this process only for the test; their
	// sockets stay open and the tunnels idle on): what is left above the sockets is the gateway's.
	// (Dropping the gateway's side instead would not be exact: a finished tunnel's stopped idle
	// timer may still hold it until the runtime's timer heap lets it go.)
	for i := range conns {
		conns[i].client = nil
	}
	gatewayOnly := memoryInUse()

	per := func(a, b inUse) float64 { return (float64(a.heap+a.stack) - float64(b.heap+b.stack)) / float64(n) }
	gateway := per(gatewayOnly, sockets) // the server's tls.Conn, the tunnel
	tunnel := per(idle, handshaken)      // what the tunnel added (and the clients' few bytes more)
	clientTLS := per(idle, gatewayOnly)
	stack := float64(idle.stack-handshaken.stack) / float64(n)
	t.Logf("an idle wss tunnel (%d tunnels): %.0f bytes on the gateway's side: the tunnel %.0f (goroutine stacks %.0f), the server's TLS connection %.0f; not counted: the client's TLS connection %.0f, four sockets %.0f",
		n, gateway, tunnel, stack, gateway-tunnel, clientTLS, per(sockets, start))
	// The bounds: no goroutine, about 2 KiB of tunnel state as in the plain tunnel, and
	// crypto/tls's state of the connection after the handshake (about 6.5 KiB, heap profile: the
	// record and handshake-message buffers kept at the size the ClientHello grew them to, 3.5;
	// the AES-GCM states both ways, 1.75; the Conn, 0.9). A goroutine left waiting per tunnel, a
	// relay buffer held while idle (32 KiB), or 1.5 KiB more tunnel state breaks them.
	if stack > 512 {
		t.Errorf("an idle wss tunnel's goroutine stacks take %.0f bytes, want none", stack)
	}
	if gateway > 10<<10 { // about 8.5 KiB
		t.Errorf("an idle wss tunnel takes %.0f bytes on the gateway's side, want at most 10 KiB", gateway)
	}
	for _, tun := range tunnels {
		tun.Shutdown(CloseGoingAway)
	}
	for range n {
		<-done
	}
	runtime.KeepAlive(conns)
}
