package websocket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// frame builds one frame. Masked frames use a fixed key; the payload is masked as the RFC says.
func frame(fin bool, opcode byte, payload []byte, masked bool) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var out []byte
	out = append(out, b0)
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, maskBit|byte(n))
	case n < 1<<16:
		out = append(out, maskBit|126, byte(n>>8), byte(n))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if masked {
		key := []byte{1, 2, 3, 4}
		out = append(out, key...)
		for i, c := range payload {
			out = append(out, c^key[i%4])
		}
		return out
	}
	return append(out, payload...)
}

func TestFrameScannerLimitsAndBoundaries(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000)
	tests := []struct {
		name   string
		masked bool
		max    int64
		stream []byte
		fwd    int
		err    error
	}{
		{"small text", true, 0, frame(true, 1, []byte("hi"), true), 8, nil},
		{"16-bit length", false, 0, frame(true, 2, big[:300], false), 304, nil},
		{"64-bit length", false, 0, frame(true, 2, big, false), 70010, nil},
		{"at the limit", false, 300, frame(true, 2, big[:300], false), 304, nil},
		{"over the limit", false, 299, frame(true, 2, big[:300], false), 0, ErrMessageTooBig},
		{"fragments add up", false, 250, append(append(frame(false, 1, big[:200], false), frame(true, 9, []byte("p"), false)...), frame(true, 0, big[:100], false)...), 204 + 3, ErrMessageTooBig},
		{"new message resets", false, 250, append(frame(true, 1, big[:200], false), frame(true, 1, big[:200], false)...), 408, nil},
		{"unmasked from client", true, 0, frame(true, 1, []byte("hi"), false), 0, ErrBadFrame},
		{"masked from server", false, 0, frame(true, 1, []byte("hi"), true), 0, ErrBadFrame},
		{"reserved opcode", false, 0, frame(true, 3, nil, false), 0, ErrBadFrame},
		{"fragmented control", false, 0, frame(false, 9, nil, false), 0, ErrBadFrame},
		{"long control", false, 0, frame(true, 8, big[:126], false), 0, ErrBadFrame},
	}
	for _, tc := range tests {
		s := newFrameScanner(tc.masked, tc.max)
		fwd, err := s.feed(tc.stream)
		if fwd != tc.fwd || !errors.Is(err, tc.err) {
			t.Errorf("%s: feed = %d, %v; want %d, %v", tc.name, fwd, err, tc.fwd, tc.err)
		}
	}
}

func TestFrameScannerHoldsBackPartialHeaders(t *testing.T) {
	f := frame(true, 2, bytes.Repeat([]byte("y"), 300), false) // 4-byte header
	s := newFrameScanner(false, 0)
	if n, err := s.feed(f[:3]); n != 0 || err != nil {
		t.Fatalf("3 bytes of a 4-byte header: forwarded %d, %v; want 0 held back", n, err)
	}
	if n, err := s.feed(f[:10]); n != 10 || err != nil || s.atBoundary() {
		t.Fatalf("header and some payload: %d, %v", n, err)
	}
	if n, err := s.feed(f[10:]); n != len(f)-10 || err != nil || !s.atBoundary() {
		t.Fatalf("rest: %d, %v, boundary %v", n, err, s.atBoundary())
	}
}

// FuzzFrameScanner: feeding a stream in arbitrary pieces (holding back what the scanner does not
// take, as the tunnel does) forwards the same bytes and finds the same error as feeding it whole,
// and a stop always falls on a frame boundary.
func FuzzFrameScanner(f *testing.F) {
	f.Add(frame(true, 1, []byte("hello"), false), uint8(3), int64(0))
	f.Add(append(frame(false, 2, bytes.Repeat([]byte("a"), 200), false), frame(true, 0, []byte("b"), false)...), uint8(7), int64(150))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8, max int64) {
		if max < 0 {
			max = -max
		}
		whole := newFrameScanner(false, max)
		wantN, wantErr := whole.feed(stream)
		piece := newFrameScanner(false, max)
		chunk := int(step%16) + 1
		fwd, pending := 0, []byte(nil)
		var gotErr error
		for i := 0; i < len(stream) && gotErr == nil; i += chunk {
			pending = append(pending, stream[i:min(i+chunk, len(stream))]...)
			n, err := piece.feed(pending)
			fwd += n
			pending = pending[n:]
			gotErr = err
		}
		if wantErr != nil && gotErr != nil && !errors.Is(gotErr, wantErr) {
			t.Fatalf("errors differ: whole %v, pieces %v", wantErr, gotErr)
		}
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("whole: %d %v; pieces: %d %v", wantN, wantErr, fwd, gotErr)
		}
		if wantErr != nil && fwd != wantN {
			t.Fatalf("stopped at %d in pieces, %d whole", fwd, wantN)
		}
		if wantErr == nil && fwd+len(pending) != len(stream) {
			t.Fatalf("forwarded %d + held %d of %d", fwd, len(pending), len(stream))
		}
	})
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// tunnelFixture: client ⇄ [gateway side: clientSide | upstreamSide] ⇄ upstream
func tunnelFixture(t testing.TB, l Limits) (client, upstream net.Conn, tun *Tunnel, done chan Stats) {
	client, clientSide := tcpPair(t)
	upstreamSide, upstream := tcpPair(t)
	tun = New(End{Conn: clientSide}, End{Conn: upstreamSide}, l, testPoller(t))
	done = make(chan Stats, 1)
	go func() { done <- tun.Run() }()
	return client, upstream, tun, done
}

func readFull(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

func TestTunnelRelaysBothWays(t *testing.T) {
	client, upstream, _, done := tunnelFixture(t, Limits{IdleTimeout: 5 * time.Second, MaxMessageBytes: 1 << 20})
	for i := range 100 {
		msg := frame(true, 1, []byte{byte(i), 'x'}, true)
		client.Write(msg)
		if got := readFull(t, upstream, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("upstream got %x, want %x", got, msg)
		}
		reply := frame(true, 1, []byte{byte(i), 'y'}, false)
		upstream.Write(reply)
		if got := readFull(t, client, len(reply)); !bytes.Equal(got, reply) {
			t.Fatalf("client got %x", got)
		}
	}
	client.Close()
	upstream.Close()
	select {
	case st := <-done:
		if st.ClientToUpstream != 800 || st.UpstreamToClient != 400 || st.CloseCode != 0 {
			t.Fatalf("stats %+v", st)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("tunnel did not end when both sides closed")
	}
}

func expectClose(t *testing.T, c net.Conn, masked bool, code uint16) {
	t.Helper()
	want := closeFrame(code, masked)
	if got := readFull(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want close frame %d (%x)", got, code, want)
	}
}

func TestTunnelClosesTooBigMessagesWith1009(t *testing.T) {
	client, upstream, _, done := tunnelFixture(t, Limits{MaxMessageBytes: 100})
	ok := frame(true, 2, bytes.Repeat([]byte("a"), 100), true)
	client.Write(ok)
	readFull(t, upstream, len(ok))
	client.Write(frame(true, 2, bytes.Repeat([]byte("b"), 101), true))
	expectClose(t, upstream, true, CloseMessageTooBig)
	expectClose(t, client, false, CloseMessageTooBig)
	if st := <-done; st.CloseCode != CloseMessageTooBig {
		t.Fatalf("stats %+v", st)
	}
}

func TestTunnelIdleTimeoutAndShutdown(t *testing.T) {
	client, upstream, _, done := tunnelFixture(t, Limits{IdleTimeout: 300 * time.Millisecond})
	start := time.Now()
	expectClose(t, client, false, CloseGoingAway)
	expectClose(t, upstream, true, CloseGoingAway)
	<-done
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle close after %v, want about 300ms", d)
	}

	// Traffic in one direction keeps the tunnel alive for both.
	client2, upstream2, tun2, done2 := tunnelFixture(t, Limits{IdleTimeout: 300 * time.Millisecond})
	for range 10 {
		msg := frame(true, 1, []byte("tick"), false)
		upstream2.Write(msg)
		readFull(t, client2, len(msg))
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-done2:
		t.Fatal("the tunnel closed although the upstream kept talking")
	default:
	}
	// Mid-frame: a shutdown cannot inject a close frame into the middle of a frame, so it waits
	// for the boundary on that side.
	tun2.Shutdown(CloseGoingAway)
	expectClose(t, client2, false, CloseGoingAway)
	expectClose(t, upstream2, true, CloseGoingAway)
	<-done2
}

// BenchmarkTunnelThroughput pushes 1 KiB masked messages from client to upstream through a
// tunnel over loopback TCP and reports throughput.
func BenchmarkTunnelThroughput(b *testing.B) {
	client, upstream, _, done := tunnelFixture(b, Limits{IdleTimeout: time.Minute, MaxMessageBytes: 1 << 20})
	msg := frame(true, 2, bytes.Repeat([]byte("m"), 1024), true)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := upstream.Read(buf); err != nil {
				return
			}
		}
	}()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	client.Close()
	upstream.Close()
	<-done
}
