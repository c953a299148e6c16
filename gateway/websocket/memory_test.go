//go:build !race

// The race detector doubles stack guards and drops pooled items at random, so these figures
// hold only without it.

package websocket

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
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

// An idle tunnel costs one goroutine at the minimum stack and about 1.5 KiB besides: no relay
// buffer, whatever it relayed before. Measured over many tunnels that each carried a message
// both ways and then went quiet; one in twenty carried 1 MiB, which hands it over to its two
// pumps (at the minimum stack too).
func TestIdleTunnelMemory(t *testing.T) {
	if !measuringChild(t, "TestIdleTunnelMemory", "an idle tunnel:") {
		return
	}
	const n = 200
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
	before := memoryInUse()
	tunnels := make([]*Tunnel, n)
	big := frame(true, 2, make([]byte, 1<<20), true)
	for i, e := range conns {
		tunnels[i] = New(End{Conn: e.clientSide}, End{Conn: e.up}, Limits{IdleTimeout: time.Hour, MaxMessageBytes: 2 << 20})
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
	after := memoryInUse()
	perTunnel := float64(after.heap+after.stack-before.heap-before.stack) / n
	stack := float64(after.stack-before.stack) / n
	t.Logf("an idle tunnel: %.0f bytes, of which goroutine stacks %.0f", perTunnel, stack)
	if stack > 2048*1.2 {
		t.Errorf("an idle tunnel's goroutine stacks take %.0f bytes, want about 2 KiB (one goroutine at the minimum)", stack)
	}
	if perTunnel > 5<<10 { // about 3.7 KiB
		t.Errorf("an idle tunnel takes %.0f bytes, want at most 5 KiB", perTunnel)
	}
	for _, tun := range tunnels {
		tun.Shutdown(CloseGoingAway)
	}
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
