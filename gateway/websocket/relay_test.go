package websocket

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// hiddenSocket hides the socket's descriptor (it has no SyscallConn), as a connection wrapper
// of unknown kind does: the tunnel then waits in a small read instead.
type hiddenSocket struct{ net.Conn }

// transports are the kinds of connection a tunnel relays between: a socket it waits on itself,
// a wrapped socket it cannot see, and TLS (which buffers decrypted bytes above the socket).
var transports = []struct {
	name string
	pair func(testing.TB) (outside, tunnelSide net.Conn)
}{
	{"socket", tcpPair},
	{"wrapped", func(t testing.TB) (net.Conn, net.Conn) {
		a, b := tcpPair(t)
		return a, hiddenSocket{b}
	}},
	{"tls", tlsPair},
}

// tlsPair returns the two ends of a loopback TLS connection, handshake done.
func tlsPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	a, b := tcpPair(t)
	return tlsOver(t, a, b, &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}}, &tls.Config{InsecureSkipVerify: true})
}

// tlsOver completes a TLS handshake over the connected a (client) and b (server) and returns
// the client's and the server's TLS connections.
func tlsOver(t testing.TB, a, b net.Conn, srvConf, cliConf *tls.Config) (net.Conn, net.Conn) {
	t.Helper()
	srv := tls.Server(b, srvConf)
	cli := tls.Client(a, cliConf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cli, srv
}

var (
	certOnce sync.Once
	cert     tls.Certificate
)

func testCertificate(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return cert
}

// startTunnel: client ⇄ [tunnel] ⇄ upstream over the given transport.
func startTunnel(t testing.TB, pair func(testing.TB) (net.Conn, net.Conn), l Limits) (client, upstream net.Conn, tun *Tunnel, done chan Stats) {
	client, clientSide := pair(t)
	upstream, upstreamSide := pair(t)
	tun = New(endOf(clientSide, nil), endOf(upstreamSide, nil), l, testPoller(t))
	done = make(chan Stats, 1)
	tun.Start(func(s Stats) { done <- s })
	return client, upstream, tun, done
}

// endOf is the End of a tunnel's side: a TLS connection's socket is given as Readable, as the
// gateway does for a wss:// client.
func endOf(c net.Conn, pending []byte) End {
	e := End{Conn: c, Pending: pending}
	if tc, ok := c.(*tls.Conn); ok {
		e.Readable = socketOf(tc.NetConn())
	}
	return e
}

// testPoller is a Poller for one test (none where there is no epoll), stopped at its end.
func testPoller(t testing.TB) *Poller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := NewPoller(ctx)
	if err != nil {
		cancel()
		if runtime.GOOS == "linux" {
			t.Fatal(err)
		}
		return nil
	}
	t.Cleanup(func() {
		cancel()
		<-p.Done()
	})
	return p
}

// waitArmed waits until n directions wait in p.
func waitArmed(t testing.TB, p *Poller, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Armed() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d directions wait in the poller, want %d", p.Armed(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitIdle waits until neither direction holds a relay buffer.
func waitIdle(t testing.TB, tun *Tunnel) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tun.up.holding.Load() || tun.down.holding.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the tunnel still holds a relay buffer with nothing to relay")
		}
		time.Sleep(time.Millisecond)
	}
}

// stream is a sequence of frames and the bytes they make.
func stream(rng *mrand.Rand, frames, maxPayload int, masked bool) []byte {
	var out []byte
	for range frames {
		p := make([]byte, rng.IntN(maxPayload+1))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		out = append(out, frame(true, 2, p, masked)...)
	}
	return out
}

// sendBothWays writes toUp from the client and toDown from the upstream, each in pieces of
// random size (so frame headers are split across reads), and checks that each side reads
// exactly what the other wrote.
func sendBothWays(t *testing.T, client, upstream net.Conn, toUp, toDown []byte, seed uint64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	write := func(c net.Conn, b []byte, seed uint64) {
		defer wg.Done()
		rng := mrand.New(mrand.NewPCG(seed, 1))
		for len(b) > 0 {
			n := min(len(b), 1+rng.IntN(70000))
			if _, err := c.Write(b[:n]); err != nil {
				errs <- err
				return
			}
			b = b[n:]
		}
	}
	read := func(c net.Conn, want []byte, dir string) {
		defer wg.Done()
		got := make([]byte, len(want))
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			errs <- err
			return
		}
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Errorf("%s: the bytes differ from offset %d of %d", dir, i, len(want))
		}
	}
	wg.Add(4)
	go write(client, toUp, seed)
	go write(upstream, toDown, seed+1)
	go read(upstream, toUp, "client to upstream")
	go read(client, toDown, "upstream to client")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err) // not Fatal: this may run on a goroutine of the test's own
	}
}

func TestTunnelRelaysByteExact(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			client, upstream, tun, done := startTunnel(t, tr.pair, Limits{IdleTimeout: time.Minute, MaxMessageBytes: 4 << 20})
			rng := mrand.New(mrand.NewPCG(7, 7))
			big := func(masked bool) []byte {
				p := make([]byte, 1<<20)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				return append(frame(true, 2, p, masked), frame(true, 2, p[:1000], masked)...)
			}

			// Many small frames both ways, then 1 MiB frames both ways.
			sendBothWays(t, client, upstream, stream(rng, 3000, 200, true), stream(rng, 3000, 200, false), 1)
			sendBothWays(t, client, upstream, big(true), big(false), 2)

			// Idle: nothing held; then active again.
			waitIdle(t, tun)
			sendBothWays(t, client, upstream, stream(rng, 50, 300, true), stream(rng, 50, 300, false), 3)
			waitIdle(t, tun)
			msg := frame(true, 1, []byte("after idle"), true)
			if _, err := client.Write(msg); err != nil {
				t.Fatal(err)
			}
			if got := readFull(t, upstream, len(msg)); !bytes.Equal(got, msg) {
				t.Fatalf("after idle: upstream got %x", got)
			}

			client.Close()
			upstream.Close()
			select {
			case st := <-done:
				// (The close code is 1001 when a side without CloseWrite, like the wrapper here,
				// cannot be half-closed: the first end ends the tunnel.)
				if st.ClientToUpstream == 0 || st.UpstreamToClient == 0 {
					t.Fatalf("stats %+v", st)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the tunnel did not end when both sides closed")
			}
		})
	}
}

// Bytes read past the HTTP head on either side are relayed first, and a frame header split
// between them and the next read is put together.
func TestTunnelRelaysPendingBytesFirst(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			client, clientSide := tr.pair(t)
			upstream, upstreamSide := tr.pair(t)
			toUp := append(frame(true, 1, []byte("first"), true), frame(true, 1, bytes.Repeat([]byte("s"), 300), true)...)
			toDown := append(frame(true, 1, []byte("hello"), false), frame(true, 2, bytes.Repeat([]byte("d"), 70000), false)...)
			const split = 7 + 2 // the second header, 4 bytes, is cut after its first 2
			tun := New(endOf(clientSide, toUp[:11+2]), endOf(upstreamSide, toDown[:split+2]), Limits{}, testPoller(t))
			done := make(chan Stats, 1)
			tun.Start(func(s Stats) { done <- s })
			go func() { _, _ = client.Write(toUp[11+2:]) }()
			go func() { _, _ = upstream.Write(toDown[split+2:]) }()
			if got := readFull(t, upstream, len(toUp)); !bytes.Equal(got, toUp) {
				t.Fatalf("upstream got %q", got)
			}
			if got := readFull(t, client, len(toDown)); !bytes.Equal(got, toDown) {
				t.Fatal("client got other bytes")
			}
			tun.Shutdown(CloseGoingAway)
			expectClose(t, client, false, CloseGoingAway)
			expectClose(t, upstream, true, CloseGoingAway)
			<-done
		})
	}
}

// Many tunnels relay at once through the shared buffer pool; each must get exactly its own
// bytes (a buffer used by two pumps at once would mix them, and the race detector sees it).
func TestTunnelsNeverShareABuffer(t *testing.T) {
	const tunnels = 24
	var wg sync.WaitGroup
	for i := range tunnels {
		tr := transports[i%len(transports)]
		client, upstream, _, done := startTunnel(t, tr.pair, Limits{IdleTimeout: time.Minute})
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(i), 99))
			for round := range 4 {
				sendBothWays(t, client, upstream, stream(rng, 200, 2000, true), stream(rng, 200, 2000, false), uint64(i*10+round))
			}
			client.Close()
			upstream.Close()
			<-done
		}()
	}
	wg.Wait()
}

// A write the destination does not take for the idle timeout ends the tunnel, even while the
// other direction keeps it busy.
func TestTunnelIdleTimeoutBoundsAStuckWrite(t *testing.T) {
	client, upstream, _, done := startTunnel(t, tcpPair, Limits{IdleTimeout: 300 * time.Millisecond})
	// The upstream never reads: the client's bytes fill both socket buffers and the write
	// blocks. Meanwhile the upstream talks, so the tunnel is not idle.
	stop := make(chan struct{})
	go func() {
		big := frame(true, 2, make([]byte, 1<<20), true)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := client.Write(big); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := upstream.Write(frame(true, 1, []byte("tick"), false)); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	defer close(stop)
	select {
	case st := <-done:
		if st.CloseCode != CloseGoingAway {
			t.Fatalf("stats %+v, want close code 1001", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a write stuck for longer than the idle timeout did not end the tunnel")
	}
}

// tlsClientPair is a TLS connection over loopback TCP: the outside end is the client, the
// tunnel's end the server's *tls.Conn, as a wss:// client reaches the gateway.
func tlsClientPair(t testing.TB) (net.Conn, net.Conn) {
	a, b := tcpPair(t)
	return tlsOver(t, a, b, &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}}, &tls.Config{InsecureSkipVerify: true})
}

// closeWrite half-closes an outside end: TCP's FIN, or TLS's close_notify and then FIN.
func closeWrite(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.NetConn().(*net.TCPConn).CloseWrite()
	}
}
