package websocket

import (
	"bytes"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// fallbackChildEnv marks the re-executed test binary that runs TestTunnelWithoutDescriptors'
// body: it lowers its own open-file limit, which must not touch the other tests' process.
const fallbackChildEnv = "ARCHWAY_WEBSOCKET_FALLBACK_CHILD"

// Tunnels without a poller (the gateway could not make its epoll set: the process was at its
// open-file limit, EMFILE) relay with their two pumps from the start. Forced for real: a child
// process lowers RLIMIT_NOFILE and fills every descriptor below it before the poller is made, so
// epoll_create1 fails as it does in a gateway out of descriptors. Bytes then pass
// exactly both ways, idle then active, and the tunnel ends cleanly when either side closes.
func TestTunnelWithoutDescriptors(t *testing.T) {
	if os.Getenv(fallbackChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTunnelWithoutDescriptors$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), fallbackChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil || !bytes.Contains(out, []byte("relayed on the fallback:")) {
			t.Fatalf("the test in a child process failed: %v", err)
		}
		return
	}

	type ends struct {
		client, upstream net.Conn
		tun              *Tunnel
		done             chan Stats
	}
	// Two tunnels: the first ends from the client's side, the second from the upstream's.
	var tunnels [2]ends
	var sides [2][2]net.Conn
	for i := range tunnels {
		var clientSide, upstreamSide net.Conn
		tunnels[i].client, clientSide = tcpPair(t)
		tunnels[i].upstream, upstreamSide = tcpPair(t)
		sides[i] = [2]net.Conn{clientSide, upstreamSide}
	}

	release := exhaustDescriptors(t)
	if fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); !errors.Is(err, syscall.EMFILE) {
		if err == nil {
			syscall.Close(fd)
		}
		release()
		t.Fatalf("with every descriptor taken, epoll_create1 returned %v, want EMFILE", err)
	}
	// The gateway makes its poller at start; out of descriptors it gets none and its tunnels
	// start without one.
	poller, err := NewPoller(t.Context())
	if !errors.Is(err, syscall.EMFILE) || poller != nil {
		release()
		t.Fatalf("with every descriptor taken, NewPoller returned %v, want EMFILE", err)
	}
	for i := range tunnels {
		e := &tunnels[i]
		e.tun = New(End{Conn: sides[i][0]}, End{Conn: sides[i][1]}, Limits{IdleTimeout: time.Minute, MaxMessageBytes: 4 << 20}, poller)
		e.done = make(chan Stats, 1)
		e.tun.Start(func(s Stats) { e.done <- s })
	}
	release()
	for i, e := range tunnels {
		if !e.tun.ReadsSockets() {
			t.Fatalf("tunnel %d: does not wait on its sockets, so it would never have tried the poller", i)
		}
		if e.tun.Polled() {
			t.Fatalf("tunnel %d: waits in a poller although none could be made", i)
		}
	}

	for i, e := range tunnels {
		rng := mrand.New(mrand.NewPCG(uint64(i), 18))
		var toUp, toDown int
		send := func(up, down []byte, seed uint64) {
			sendBothWays(t, e.client, e.upstream, up, down, seed)
			if t.Failed() {
				t.FailNow()
			}
			toUp += len(up)
			toDown += len(down)
		}
		// Small frames, then frames up to 1 MiB (several buffers each), both ways at once.
		send(stream(rng, 500, 200, true), stream(rng, 500, 200, false), 1)
		send(stream(rng, 4, 1<<20, true), stream(rng, 4, 1<<20, false), 2)
		// Idle: no buffer held; then active again.
		waitIdle(t, e.tun)
		send(stream(rng, 50, 300, true), stream(rng, 50, 300, false), 3)
		waitIdle(t, e.tun)

		// One side closes; the other reads the end (a half-close passed on), then closes too.
		first, second := e.client, e.upstream
		if i == 1 {
			first, second = e.upstream, e.client
		}
		first.Close()
		_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := second.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("tunnel %d: the closing side's end did not reach the other: %d, %v", i, n, err)
		}
		second.Close()
		select {
		case st := <-e.done:
			if st.CloseCode != 0 || st.ClientToUpstream != int64(toUp) || st.UpstreamToClient != int64(toDown) {
				t.Fatalf("tunnel %d: stats %+v, want %d bytes up, %d down, no close code", i, st, toUp, toDown)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tunnel %d: did not end when both sides closed", i)
		}
		if e.tun.up.holding.Load() || e.tun.down.holding.Load() {
			t.Fatalf("tunnel %d: ended holding a relay buffer", i)
		}
	}
	t.Logf("relayed on the fallback: two tunnels, two pumps each, every byte both ways")
}

// exhaustDescriptors lowers the soft open-file limit to a little above what is open and opens
// /dev/null until the kernel refuses, so the next descriptor the process asks for fails with
// EMFILE. release closes what it opened and restores the limit.
func exhaustDescriptors(t *testing.T) (release func()) {
	t.Helper()
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = uint64(len(open) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fillers []int
	release = func() {
		for _, fd := range fillers {
			syscall.Close(fd)
		}
		fillers = nil
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	}
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == nil {
			fillers = append(fillers, fd)
			if len(fillers) > 1<<16 {
				release()
				t.Fatal("the lowered open-file limit is not enforced")
			}
			continue
		}
		if !errors.Is(err, syscall.EMFILE) {
			release()
			t.Fatal(err)
		}
		return release
	}
}
