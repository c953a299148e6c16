//go:build !race && (linux || darwin || freebsd || netbsd || openbsd)

// Like memory_test.go, without the race detector; RLIMIT_NOFILE sizes the measure.

package websocket

import (
	"crypto/tls"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// An idle wss tunnel: the client's side is TLS. A *tls.Conn hides its socket (the bytes on the
// descriptor are records, not what Read returns), so the tunnel cannot watch both sockets with
// one goroutine: it relays with its two pumps, the client's waiting in a 16-byte tls.Conn.Read.
// Measured like TestIdleTunnelMemory, the outside client's TLS state in the same process taken
// out: after the tunnels idle, the clients' tls.Conns are dropped and what remains above the
// sockets is the gateway's share.
func TestIdleWssTunnelMemory(t *testing.T) {
	if !measuringChild(t, "TestIdleWssTunnelMemory", "an idle wss tunnel (") {
		return
	}
	// Four sockets a tunnel; fewer tunnels where the open-file limit is lower (the figure is per
	// tunnel).
	n := 2000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(4*n+256) {
		n = max(int(lim.Cur)-256, 0) / 4
	}
	if n < 200 {
		t.Fatalf("the open-file limit (%d) leaves room for %d tunnels, want at least 200", lim.Cur, n)
	}
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

	tunnels := make([]*Tunnel, n)
	done := make(chan Stats, n)
	msg := frame(true, 1, []byte("hello"), true)
	reply := frame(true, 1, []byte("hi"), false)
	for i, e := range conns {
		tunnels[i] = New(End{Conn: e.clientSide}, End{Conn: e.up}, Limits{IdleTimeout: time.Hour, MaxMessageBytes: 2 << 20})
		tunnels[i].Start(func(s Stats) { done <- s })
		if _, err := e.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		readFull(t, e.upstream, len(msg))
		_, _ = e.upstream.Write(reply)
		readFull(t, e.client, len(reply))
	}
	for i, tun := range tunnels {
		if tun.ReadsSockets() || tun.watching.Load() != nil {
			t.Fatalf("tunnel %d reads the TLS connection's socket itself", i)
		}
		waitIdle(t, tun)
	}
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
	gateway := per(gatewayOnly, sockets) // the server's tls.Conn, the tunnel, its two goroutines
	tunnel := per(idle, handshaken)      // what the tunnel added (and the clients' few bytes more)
	clientTLS := per(idle, gatewayOnly)
	stack := float64(idle.stack-handshaken.stack) / float64(n)
	t.Logf("an idle wss tunnel (%d tunnels): %.0f bytes on the gateway's side: the tunnel %.0f (goroutine stacks %.0f), the server's TLS connection %.0f; not counted: the client's TLS connection %.0f, four sockets %.0f",
		n, gateway, tunnel, stack, gateway-tunnel, clientTLS, per(sockets, start))
	// The bounds: two pumps at 4 KiB stacks (the client's waits inside tls.Conn.Read, deeper than
	// the 2 KiB minimum; the upstream's grew to 4 KiB writing into the tls.Conn and is not shrunk
	// back while it waits), about 2 KiB of tunnel state as in the plain tunnel, and crypto/tls's
	// state of the connection after the handshake (about 6.5 KiB, heap profile: the record and
	// handshake-message buffers kept at the size the ClientHello grew them to, 3.5; the AES-GCM
	// states both ways, 1.75; the Conn, 0.9). A relay buffer held while idle (32 KiB), a stack
	// grown to 8 KiB, or 4 KiB more tunnel state breaks them.
	if stack > 2*4096*1.1 {
		t.Errorf("an idle wss tunnel's goroutine stacks take %.0f bytes, want two 4 KiB stacks", stack)
	}
	if gateway > 18<<10 { // about 16.4 KiB
		t.Errorf("an idle wss tunnel takes %.0f bytes on the gateway's side, want at most 18 KiB", gateway)
	}
	for _, tun := range tunnels {
		tun.Shutdown(CloseGoingAway)
	}
	for range n {
		<-done
	}
	runtime.KeepAlive(conns)
}
