package websocket

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits bound one tunnel.
type Limits struct {
	// IdleTimeout closes the tunnel (code 1001) after this long without a byte in either
	// direction; it also bounds each write. 0 means no limit.
	IdleTimeout time.Duration
	// MaxMessageBytes closes the tunnel (code 1009) when a message, counted over all its
	// fragments, would exceed it. 0 means no limit.
	MaxMessageBytes int64
}

// Stats are what a finished tunnel carried.
type Stats struct {
	ClientToUpstream int64
	UpstreamToClient int64
	CloseCode        uint16 // the code the gateway sent, or 0 when an endpoint ended it
}

// End is one side of a tunnel.
type End struct {
	// Conn carries the side's bytes: the tunnel reads and writes it, and closes it at the end.
	// When Conn implements syscall.Conn, the tunnel waits for its descriptor to become readable
	// and reads (and, while one goroutine watches the tunnel, writes) the socket itself, so the
	// descriptor must carry exactly what Conn.Read and Conn.Write would: a wrapper that buffers
	// or transforms bytes must not implement syscall.Conn.
	Conn net.Conn
	// Pending holds bytes already read from Conn (past the HTTP head); they are relayed first.
	Pending []byte
}

// Tunnel relays an upgraded connection between a client and an upstream: one pump per
// direction, each on a goroutine of its own (Start), after a quiet start with one goroutine
// for both when both ends are sockets (watch_linux.go). A pump waiting for its source holds no
// buffer (it takes one from a shared pool while bytes flow and gives it back when the source
// runs dry) and keeps its goroutine's stack at the 2 KiB minimum by keeping its calls shallow:
// no deadline is set while bytes flow, the idle timeout is a timer of the tunnel. An idle tunnel
// so costs two small goroutines and a few hundred bytes of state. Shutdown may be called from any
// goroutine.
type Tunnel struct {
	client, upstream net.Conn
	limits           Limits

	lastActivity atomic.Int64 // unix nanoseconds of the last byte read from either side
	closeCode    atomic.Uint32
	ended        atomic.Int32 // pumps that have returned; the second one closes and reports
	up, down     pump
	idle         *time.Timer // nil without an idle timeout
	done         func(Stats)
	watching     atomic.Pointer[watcher] // while one goroutine watches both sockets (watch.go)
}

// New prepares a tunnel between client and upstream.
func New(client, upstream End, l Limits) *Tunnel {
	t := &Tunnel{client: client.Conn, upstream: upstream.Conn, limits: l}
	t.up.init(t, client, upstream.Conn, true)
	t.down.init(t, upstream, client.Conn, false)
	t.lastActivity.Store(time.Now().UnixNano())
	return t
}

// Start relays on two new goroutines, one per direction, until both directions have ended;
// then it closes both connections and calls done (if not nil) on the last of them.
func (t *Tunnel) Start(done func(Stats)) {
	t.done = done
	// The handshake left deadlines on both connections; the tunnel keeps none while it relays.
	_ = t.client.SetDeadline(time.Time{})
	_ = t.upstream.SetDeadline(time.Time{})
	if d := t.limits.IdleTimeout; d > 0 {
		// Made stopped and then set, so checkIdle never runs before t.idle is assigned.
		t.idle = time.AfterFunc(math.MaxInt64, t.checkIdle)
		t.idle.Reset(d)
	}
	if t.ReadsSockets() && len(t.up.pending) == 0 && len(t.down.pending) == 0 {
		if w, err := t.newWatcher(); err == nil {
			t.up.dstRaw, t.down.dstRaw = t.down.raw, t.up.raw
			t.watching.Store(w)
			go t.watch(w)
			return
		}
	}
	go t.up.run()
	go t.down.run()
}

// Run relays until both directions end, then closes both connections.
func (t *Tunnel) Run() Stats {
	done := make(chan Stats, 1)
	t.Start(func(s Stats) { done <- s })
	return <-done
}

// ReadsSockets reports whether both directions wait on their socket's descriptor and read it
// directly (End.Conn implements syscall.Conn). Otherwise a direction waits in a read of a few
// bytes (a TLS connection, or a wrapper that hides the socket): still no buffer, but a read
// more per burst of bytes.
func (t *Tunnel) ReadsSockets() bool { return t.up.raw != nil && t.down.raw != nil }

// Shutdown ends the tunnel with a close frame carrying code, sent to each side at the next frame
// boundary (or the connections are simply closed when a frame is in flight). Safe to call more
// than once; the first code wins.
func (t *Tunnel) Shutdown(code uint16) {
	t.closeCode.CompareAndSwap(0, uint32(code))
	// Wake both pumps from their waits.
	now := time.Now()
	_ = t.client.SetReadDeadline(now)
	_ = t.upstream.SetReadDeadline(now)
	if w := t.watching.Load(); w != nil {
		_ = w.file.SetReadDeadline(now)
	}
}

// checkIdle runs when the idle timer fires. It ends a tunnel that carried nothing for the idle
// timeout, and unblocks a write stuck for that long; otherwise it sets the timer for the next
// moment either could happen. Doing this here rather than with a deadline per read and write
// keeps the timer work off the pumps' goroutines (and their stacks small).
func (t *Tunnel) checkIdle() {
	d := int64(t.limits.IdleTimeout)
	now := time.Now().UnixNano()
	next := int64(0)
	for _, p := range [2]*pump{&t.up, &t.down} {
		w := p.writing.Load()
		if w == 0 {
			continue
		}
		if now-w >= d {
			t.Shutdown(CloseGoingAway)
			_ = p.dst.SetWriteDeadline(time.Unix(0, now))
			continue
		}
		if next == 0 || w+d < next {
			next = w + d
		}
	}
	if t.closeCode.Load() == 0 {
		quiet := t.lastActivity.Load() + d
		if now >= quiet {
			t.Shutdown(CloseGoingAway)
		} else if next == 0 || quiet < next {
			next = quiet
		}
	}
	if next != 0 && t.ended.Load() < 2 {
		t.idle.Reset(time.Duration(next - now))
	}
}

// finish is called as each direction ends; the second closes both connections and reports
// true.
func (t *Tunnel) finish() bool {
	if t.ended.Add(1) < 2 {
		return false
	}
	if t.idle != nil {
		t.idle.Stop()
	}
	_ = t.client.Close()
	_ = t.upstream.Close()
	if t.done != nil {
		t.done(Stats{ClientToUpstream: t.up.count.Load(), UpstreamToClient: t.down.count.Load(), CloseCode: uint16(t.closeCode.Load())})
	}
	return true
}

// relayBuffer is what a pump reads into while bytes flow. Pooled by pointer, so taking and
// giving one back allocates nothing.
type relayBuffer [32 << 10]byte

var relayBuffers = sync.Pool{New: func() any { return new(relayBuffer) }}

// maxHeaderLen is the longest frame header: 2 bytes, an 8-byte length and a 4-byte mask key.
const maxHeaderLen = 14

// pump relays one direction. Its fields belong to its goroutine, except writing and holding
// (read by the idle timer and by tests) and count.
type pump struct {
	t          *Tunnel
	src, dst   net.Conn
	raw        syscall.RawConn // src's descriptor; nil when src does not expose one
	readFn     func(fd uintptr) bool
	toUpstream bool // frames in this direction are masked
	scan       frameScanner
	pending    []byte

	buf   *relayBuffer // held only while bytes flow
	have  int          // head[:have] is an incomplete frame header held back from the last read
	head  [16]byte     // that header; and, on a connection without a descriptor, the waiting read
	n     int          // the result of readRaw and readNow
	rerr  error
	again bool // readNow found nothing

	// While the watcher relays (watch.go): writes go to the destination's socket without
	// blocking; what it did not take is left in unsent for the pump, at the hand-over.
	nonBlocking bool
	ended       bool
	dstRaw      syscall.RawConn
	readNowFn   func(fd uintptr) bool
	writeFn     func(fd uintptr) bool
	out         []byte
	wrote       int
	full        bool
	werr        error
	unsent      []byte

	writing atomic.Int64 // unix nanoseconds when the write in progress began, 0 when none
	holding atomic.Bool  // buf != nil
	count   atomic.Int64
}

func (p *pump) init(t *Tunnel, src End, dst net.Conn, toUpstream bool) {
	p.t, p.src, p.dst, p.pending, p.toUpstream = t, src.Conn, dst, src.Pending, toUpstream
	p.scan = newFrameScanner(toUpstream, t.limits.MaxMessageBytes)
	if p.raw = socketOf(src.Conn); p.raw != nil {
		// Bound once: a read or write allocates nothing.
		p.readFn = p.readRaw
		p.bindWatch()
	}
}

func (p *pump) run() {
	defer p.t.finish()
	defer p.giveBack()
	if p.unsent != nil { // what the watcher could not write without blocking
		unsent := p.unsent
		p.unsent = nil
		if !p.write(unsent) {
			return
		}
	}
	if len(p.pending) > 0 {
		pending := p.pending
		p.pending = nil
		p.t.lastActivity.Store(time.Now().UnixNano())
		if !p.relay(pending) {
			return
		}
	}
	var err error
	if p.raw != nil {
		err = p.pumpSocket()
	} else {
		err = p.pumpConn()
	}
	if err != nil {
		p.endWith(err)
	} // else a close frame was sent, or the destination failed
}

// endWith passes the end of the source on: a closed source half-closes the destination when it
// can, and otherwise (or when the source broke) ends the tunnel; the other direction finishes.
func (p *pump) endWith(err error) {
	if cw, ok := p.dst.(interface{ CloseWrite() error }); ok && err == io.EOF {
		_ = cw.CloseWrite()
		return
	}
	p.t.Shutdown(CloseGoingAway)
}

// pumpSocket relays from a source with a descriptor until the tunnel shuts down (nil) or the
// source ends (its error, io.EOF when it closed).
func (p *pump) pumpSocket() error {
	for {
		if p.t.closeCode.Load() != 0 {
			p.sendClose()
			return nil
		}
		if p.buf == nil {
			p.take()
		}
		p.n, p.rerr = 0, nil
		if err := p.raw.Read(p.readFn); err != nil {
			p.giveBack()
			if errors.Is(err, os.ErrDeadlineExceeded) && p.t.closeCode.Load() != 0 {
				continue // Shutdown woke the wait
			}
			return err
		}
		if p.buf == nil {
			continue // readable again after a wait: take a buffer, then read
		}
		switch {
		case p.n > 0:
			p.t.lastActivity.Store(time.Now().UnixNano())
			if !p.relay(p.buf[:p.have+p.n]) {
				return nil
			}
		case p.rerr != nil:
			return p.rerr
		default:
			return io.EOF
		}
	}
}

// pumpConn relays from a source without a descriptor (a TLS connection): the pump waits in a
// read of at most len(head) bytes, then takes a buffer for the rest of what is there. The rest
// of a frame is awaited with the buffer (it is on its way); at a frame boundary only what the
// connection already holds (a TLS record's remaining plaintext) is taken, with a read that
// cannot wait, and the buffer goes back.
func (p *pump) pumpConn() error {
	for {
		if p.t.closeCode.Load() != 0 {
			p.sendClose()
			return nil
		}
		n, err := p.src.Read(p.head[p.have:])
		if n > 0 {
			p.t.lastActivity.Store(time.Now().UnixNano())
			p.take()
			got := copy(p.buf[:], p.head[:p.have+n])
			ok := p.relay(p.buf[:got])
			if ok && err == nil {
				err = p.drain()
			}
			p.giveBack()
			if !ok || err == errRelayStopped {
				return nil
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && p.t.closeCode.Load() != 0 {
				continue // Shutdown woke the wait
			}
			return err
		}
	}
}

// errRelayStopped: the destination failed while draining; the pump ends without a close frame.
var errRelayStopped = errors.New("relay stopped")

// drain reads what follows the waiting read into the buffer: see pumpConn.
func (p *pump) drain() error {
	for p.t.closeCode.Load() == 0 {
		waiting := p.have > 0 || !p.scan.atBoundary()
		if !waiting {
			_ = p.src.SetReadDeadline(time.Unix(1, 0))
		}
		copy(p.buf[:], p.head[:p.have])
		m, err := p.src.Read(p.buf[p.have:])
		if !waiting {
			_ = p.src.SetReadDeadline(time.Time{}) // a Shutdown in between is seen by the loop
		}
		if m > 0 {
			p.t.lastActivity.Store(time.Now().UnixNano())
			if !p.relay(p.buf[:p.have+m]) {
				return errRelayStopped
			}
		}
		if err != nil {
			if !waiting && errors.Is(err, os.ErrDeadlineExceeded) {
				return nil // nothing more held: wait with the small read again
			}
			return err
		}
	}
	return nil
}

// relay forwards what of data ends at or inside a frame and keeps an incomplete frame header
// for the next read. It reports false when the pump must end (the destination failed).
func (p *pump) relay(data []byte) bool {
	fwd, ferr := p.scan.feed(data)
	if fwd > 0 && p.nonBlocking {
		n, full, err := p.writeNow(data[:fwd])
		p.count.Add(int64(n))
		if err != nil {
			p.t.Shutdown(CloseGoingAway)
			return false
		}
		if full {
			p.unsent = data[n:fwd]
		}
	} else if fwd > 0 && !p.write(data[:fwd]) {
		return false
	}
	if ferr != nil {
		code := CloseProtocolError
		if errors.Is(ferr, ErrMessageTooBig) {
			code = CloseMessageTooBig
		}
		p.have = 0
		p.t.Shutdown(code) // the loop's first check sends the close frame
		return true
	}
	p.have = copy(p.head[:maxHeaderLen], data[fwd:])
	return true
}

// write writes b to dst, within the idle timeout when there is one (checkIdle watches).
func (p *pump) write(b []byte) bool {
	if p.t.limits.IdleTimeout > 0 {
		p.writing.Store(time.Now().UnixNano())
	}
	_, err := p.dst.Write(b)
	if p.t.limits.IdleTimeout > 0 {
		p.writing.Store(0)
	}
	if err != nil {
		p.t.Shutdown(CloseGoingAway)
		return false
	}
	p.count.Add(int64(len(b)))
	return true
}

func (p *pump) take() {
	p.buf = relayBuffers.Get().(*relayBuffer)
	p.holding.Store(true)
}

func (p *pump) giveBack() {
	if p.buf != nil {
		relayBuffers.Put(p.buf)
		p.buf = nil
		p.holding.Store(false)
	}
}

// sendClose writes a close frame to dst when nothing is in flight there.
func (p *pump) sendClose() {
	if !p.scan.atBoundary() {
		return
	}
	_ = p.dst.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = p.dst.Write(closeFrame(uint16(p.t.closeCode.Load()), p.toUpstream))
}
