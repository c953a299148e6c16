//go:build linux && !race

// The race detector doubles stack guards and drops pooled items at random, so these figures
// hold only without it; idle tunnels wait in the Poller, which is Linux's.

package websocket

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A steady relay of messages allocates nothing: the buffer comes from the pool, the socket is
// read through a callback bound once.
func TestTunnelRelayAllocatesNothing(t *testing.T) {
	client, upstream, tun, _ := startTunnel(t, tcpPair, Limits{IdleTimeout: time.Minute, MaxMessageBytes: 1 << 20})
	if !tun.ReadsSockets() {
		t.Fatal("the tunnel does not wait on its sockets")
	}
	up := frame(true, 2, bytes.Repeat([]byte("u"), 128), true)
	down := frame(true, 2, bytes.Repeat([]byte("d"), 128), false)
	buf := make([]byte, len(up))
	roundTrip := func() {
		if _, err := client.Write(up); err != nil {
			t.Fatal(err)
		}
		if _, err := readInto(upstream, buf[:len(up)]); err != nil {
			t.Fatal(err)
		}
		if _, err := upstream.Write(down); err != nil {
			t.Fatal(err)
		}
		if _, err := readInto(client, buf[:len(down)]); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 {
		roundTrip()
	}
	if a := testing.AllocsPerRun(2000, roundTrip); a != 0 {
		t.Fatalf("a message each way through the tunnel allocates %.2f times, want 0", a)
	}
}

func readInto(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// measuringChild reports whether this process is the one that measures: stacks must start at
// the minimum (GODEBUG adaptivestackstart=0, which only takes effect at start-up), so the test
// runs itself again in a child with it set, passes on the child's output, and fails unless the
// child logged its figure (a line containing marker).
func measuringChild(t *testing.T, test, marker string) bool {
	t.Helper()
	const setting = "adaptivestackstart=0"
	if strings.Contains(os.Getenv("GODEBUG"), setting) {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "GODEBUG="+setting)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !bytes.Contains(out, []byte(marker)) {
		t.Fatalf("the measure in a child process failed: %v", err)
	}
	return false
}

// An idle tunnel costs no goroutine and under 2 KiB: no relay buffer, whatever it relayed
// before. Measured over many tunnels that each carried a message both ways and then went quiet,
// waiting in the poller; one in twenty carried 1 MiB, which keeps its client's direction on a
// goroutine of its own (a busy direction stays a pump, at the minimum stack).
func TestIdleTunnelMemory(t *testing.T) {
	if !measuringChild(t, "TestIdleTunnelMemory", "an idle tunnel:") {
		return
	}
	n := tunnelsWithinLimit(t, 1000)
	type ends struct {
		client, upstream net.Conn
		clientSide, up   net.Conn
	}
	conns := make([]ends, n)
	for i := range conns {
		c, cs := tcpPair(t)
		u, us := tcpPair(t)
		conns[i] = ends{c, u, cs, us}
	}
	poller := testPoller(t)
	before := memoryInUse()
	tunnels := make([]*Tunnel, n)
	big := frame(true, 2, make([]byte, 1<<20), true)
	for i, e := range conns {
		tunnels[i] = New(End{Conn: e.clientSide}, End{Conn: e.up}, Limits{IdleTimeout: time.Hour, MaxMessageBytes: 2 << 20}, poller)
		tunnels[i].Start(nil)
		msg := frame(true, 1, []byte("hello"), true)
		if i%20 == 0 {
			msg = big
		}
		go func() { _, _ = e.client.Write(msg) }()
		readFull(t, e.upstream, len(msg))
		reply := frame(true, 1, []byte("hi"), false)
		_, _ = e.upstream.Write(reply)
		readFull(t, e.client, len(reply))
	}
	for _, tun := range tunnels {
		waitIdle(t, tun)
	}
	waitArmed(t, poller, 2*n-n/20)
	after := memoryInUse()
	perTunnel := float64(after.heap+after.stack-before.heap-before.stack) / float64(n)
	stack := float64(after.stack-before.stack) / float64(n)
	t.Logf("an idle tunnel: %.0f bytes, of which goroutine stacks %.0f", perTunnel, stack)
	if stack > 4096*1.1/20 { // about 160
		t.Errorf("an idle tunnel's goroutine stacks take %.0f bytes, want at most one 4 KiB stack in twenty tunnels (the busy ones' pumps)", stack)
	}
	if perTunnel > 2048 { // about 1.2 KiB
		t.Errorf("an idle tunnel takes %.0f bytes, want at most 2 KiB", perTunnel)
	}
	for _, tun := range tunnels {
		tun.Shutdown(CloseGoingAway)
	}
}

// tunnelsWithinLimit is want, or fewer where the open-file limit is lower (four sockets a
// tunnel): the figures are per tunnel. Enough tunnels that what the runtime keeps per processor
// (the stacks of a few dead goroutines) does not show in them.
func tunnelsWithinLimit(t *testing.T, want int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(4*want+256) {
		want = max(int(lim.Cur)-256, 0) / 4
	}
	if want < 200 {
		t.Fatalf("the open-file limit (%d) leaves room for %d tunnels, want at least 200", lim.Cur, want)
	}
	return want
}

type inUse struct{ heap, stack uint64 }

// memoryInUse is the live heap and the goroutine stacks, after the collector freed what it
// could (twice: pooled buffers survive one collection).
func memoryInUse() inUse {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return inUse{heap: m.HeapAlloc, stack: m.StackInuse}
}
