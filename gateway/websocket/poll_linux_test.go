//go:build linux

// The Poller exists on Linux only (epoll): elsewhere tunnels relay with their two pumps.

package websocket

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// A quiet tunnel waits in the poller with no goroutine (both directions armed), over plain
// sockets and over TLS; a busy direction keeps its goroutine as a pump. Either way a side that
// closes half-closes the other (the destination has CloseWrite), and the other side's bytes still
// pass until it closes too.
func TestQuietTunnelWaitsInThePollerBusyKeepsAPump(t *testing.T) {
	for _, tr := range []struct {
		name string
		pair func(testing.TB) (net.Conn, net.Conn)
	}{{"socket", tcpPair}, {"tls", tlsClientPair}} {
		for _, busy := range []bool{false, true} {
			poller := testPoller(t)
			client, clientSide := tr.pair(t)
			upstream, upstreamSide := tcpPair(t)
			tun := New(endOf(clientSide, nil), End{Conn: upstreamSide}, Limits{IdleTimeout: time.Minute}, poller)
			done := make(chan Stats, 1)
			tun.Start(func(s Stats) { done <- s })
			if !tun.Polled() {
				t.Fatalf("%s: the tunnel cannot wait in the poller", tr.name)
			}
			waitArmed(t, poller, 2)
			msg := frame(true, 1, []byte("quiet"), true)
			rounds := 1
			if busy {
				rounds = 200
			}
			for range rounds {
				client.Write(msg)
				readFull(t, upstream, len(msg))
			}
			// Quiet: both directions wait again. Busy: the client's direction is a pump now, the
			// upstream's (which carried nothing) still waits.
			want := 2
			if busy {
				want = 1
			}
			waitArmed(t, poller, want)
			closeWrite(t, client)
			_ = upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := upstream.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("%s, busy %v: the client's end did not reach the upstream: %d, %v", tr.name, busy, n, err)
			}
			reply := frame(true, 1, []byte("still open"), false)
			upstream.Write(reply)
			if got := readFull(t, client, len(reply)); !bytes.Equal(got, reply) {
				t.Fatalf("%s, busy %v: after the half-close the client got %x", tr.name, busy, got)
			}
			upstream.Close()
			select {
			case st := <-done:
				if st.CloseCode != 0 || st.ClientToUpstream != int64(rounds*len(msg)) || st.UpstreamToClient != int64(len(reply)) {
					t.Fatalf("%s, busy %v: stats %+v", tr.name, busy, st)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s, busy %v: the tunnel did not end", tr.name, busy)
			}
			waitArmed(t, poller, 0)
		}
	}
}

// Directions waiting in the poller when it stops (the gateway shuts down with tunnels open)
// carry on as pumps: bytes still pass both ways, and Shutdown still closes the tunnel properly.
func TestPollerStopHandsIdleDirectionsToPumps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	poller, err := NewPoller(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	client, clientSide := tlsClientPair(t)
	upstream, upstreamSide := tcpPair(t)
	tun := New(endOf(clientSide, nil), End{Conn: upstreamSide}, Limits{IdleTimeout: time.Minute}, poller)
	done := make(chan Stats, 1)
	tun.Start(func(s Stats) { done <- s })
	waitArmed(t, poller, 2)
	cancel()
	<-poller.Done()
	if n := poller.Armed(); n != 0 {
		t.Fatalf("%d directions still wait in a stopped poller", n)
	}
	up, down := frame(true, 1, []byte("after stop"), true), frame(true, 1, []byte("still here"), false)
	client.Write(up)
	if got := readFull(t, upstream, len(up)); !bytes.Equal(got, up) {
		t.Fatalf("upstream got %x", got)
	}
	upstream.Write(down)
	if got := readFull(t, client, len(down)); !bytes.Equal(got, down) {
		t.Fatalf("client got %x", got)
	}
	tun.Shutdown(CloseGoingAway)
	expectClose(t, client, false, CloseGoingAway)
	expectClose(t, upstream, true, CloseGoingAway)
	select {
	case st := <-done:
		if st.CloseCode != CloseGoingAway {
			t.Fatalf("stats %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel did not end")
	}
}

// Shutdown reaches directions that wait in the poller: each sends its close frame and the
// tunnel ends, for a plain and a TLS client.
func TestShutdownClosesIdleTunnelsInThePoller(t *testing.T) {
	for _, pair := range []func(testing.TB) (net.Conn, net.Conn){tcpPair, tlsClientPair} {
		poller := testPoller(t)
		client, clientSide := pair(t)
		upstream, upstreamSide := tcpPair(t)
		tun := New(endOf(clientSide, nil), End{Conn: upstreamSide}, Limits{}, poller)
		done := make(chan Stats, 1)
		tun.Start(func(s Stats) { done <- s })
		waitArmed(t, poller, 2)
		tun.Shutdown(CloseGoingAway)
		expectClose(t, client, false, CloseGoingAway)
		expectClose(t, upstream, true, CloseGoingAway)
		select {
		case st := <-done:
			if st.CloseCode != CloseGoingAway || st.ClientToUpstream != 0 || st.UpstreamToClient != 0 {
				t.Fatalf("stats %+v", st)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the tunnel did not end")
		}
		waitArmed(t, poller, 0)
	}
}
