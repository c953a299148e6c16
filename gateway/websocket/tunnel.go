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
	// and reads the socket itself, so the descriptor must carry exactly what Conn.Read would: a
	// wrapper that buffers or transforms bytes must not implement syscall.Conn.
	Conn net.Conn
	// Readable, for a Conn that does not expose its socket, is the socket under it when Conn is
	// a TLS connection: its readability means records are coming for Conn.Read. The tunnel
	// waits on it (with a Poller) and reads through Conn, which must return what it holds
	// already, without touching the socket, when its read deadline has passed (crypto/tls does).
	// nil: Conn is read by a goroutine that waits in it.
	Readable syscall.RawConn
	// Pending holds bytes already read from Conn (past the HTTP head); they are relayed first.
	Pending []byte
}

// Tunnel relays an upgraded connection between a client and an upstream: one pump per
// direction. With a Poller (poll_linux.go), a direction whose source ran dry waits there with
// no goroutine, and a goroutine relays only while bytes come; a busy direction keeps its
// goroutine for good. Without one (or when a source's socket is out of reach), each direction
// is a pump on a goroutine of its own for the tunnel's life. A pump holds no buffer while it
// waits (it takes one from a shared pool while bytes flow and gives it back when the source
// runs dry) and keeps its goroutine's stack small by keeping its calls shallow: no deadline is
// set while bytes flow, the idle timeout is a timer of the tunnel. Shutdown may be called from
// any goroutine.
type Tunnel struct {
	client, upstream net.Conn
	limits           Limits

	lastActivity atomic.Int64 // unix nanoseconds of the last byte read from either side
	closeCode    atomic.Uint32
	ended        atomic.Int32 // pumps that have returned; the second one closes and reports
	up, down     pump
	idle         *time.Timer // nil without an idle timeout
	done         func(Stats)
	poller       *Poller // nil: every direction is a pump for the tunnel's life
}

// New prepares a tunnel between client and upstream. Its idle directions wait in poller when
// there is one.
func New(client, upstream End, l Limits, poller *Poller) *Tunnel {
	t := &Tunnel{client: client.Conn, upstream: upstream.Conn, limits: l, poller: poller}
	t.up.init(t, client, upstream.Conn, true)
	t.down.init(t, upstream, client.Conn, false)
	t.lastActivity.Store(time.Now().UnixNano())
	return t
}

// Start relays until both directions have ended, then closes both connections and calls done
// (if not nil) on the last of them. Each direction starts on a goroutine of its own, which a
// direction that waits in the Poller ends as soon as its source runs dry.
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
	for _, p := range [2]*pump{&t.up, &t.down} {
		if t.poller != nil && p.wait != nil {
			go p.runPolled(false)
		} else {
			go p.run()
		}
	}
}

// Run relays until both directions end, then closes both connections.
func (t *Tunnel) Run() Stats {
	done := make(chan Stats, 1)
	t.Start(func(s Stats) { done <- s })
	return <-done
}

// ReadsSockets reports whether both directions wait on their socket's descriptor and read it
// directly (End.Conn implements syscall.Conn). Otherwise a direction reads through its
// connection (a TLS connection, or a wrapper that hides the socket): still no buffer while it
// waits, but a read more per burst of bytes.
func (t *Tunnel) ReadsSockets() bool { return t.up.raw != nil && t.down.raw != nil }

// Polled reports whether both directions can wait in the Poller between bursts.
func (t *Tunnel) Polled() bool { return t.poller != nil && t.up.wait != nil && t.down.wait != nil }

// Shutdown ends the tunnel with a close frame carrying code, sent to each side at the next frame
// boundary (or the connections are simply closed when a frame is in flight). Safe to call more
// than once; the first code wins.
func (t *Tunnel) Shutdown(code uint16) {
	t.closeCode.CompareAndSwap(0, uint32(code))
	// Wake both pumps from their waits; a direction waiting in the Poller is taken out and run
	// (it sends its close frame and ends).
	now := time.Now()
	_ = t.client.SetReadDeadline(now)
	_ = t.upstream.SetReadDeadline(now)
	if t.poller != nil {
		for _, p := range [2]*pump{&t.up, &t.down} {
			if t.poller.claim(p) {
				go p.runPolled(false)
			}
		}
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

// pump relays one direction. Its fields belong to the goroutine that runs it (one at a time: the
// Poller's lock orders a hand-over), except writing and holding (read by the idle timer and by
// tests) and count.
type pump struct {
	t          *Tunnel
	src, dst   net.Conn
	raw        syscall.RawConn // src's descriptor; nil when src does not expose one
	readFn     func(fd uintptr) bool
	readNowFn  func(fd uintptr) bool
	toUpstream bool // frames in this direction are masked
	scan       frameScanner
	pending    []byte

	buf   *relayBuffer // held only while bytes flow
	have  int          // head[:have] is an incomplete frame header held back from the last read
	head  [16]byte     // that header; and, on a connection without a descriptor, the waiting read
	n     int          // the result of readRaw and readNow
	rerr  error
	again bool // readNow found nothing

	// Waiting in the Poller (poll_linux.go).
	wait        syscall.RawConn // the socket whose readiness wakes this direction; nil: it cannot wait there
	fd          int             // wait's descriptor, once armed
	key         uint64          // the Poller's key for it, once armed
	registered  bool            // in the Poller's set (armed or not): guarded by the Poller's lock
	windowStart int64           // unix nanoseconds: wake-ups are counted per second
	wakeups     int

	writing atomic.Int64 // unix nanoseconds when the write in progress began, 0 when none
	holding atomic.Bool  // buf != nil
	count   atomic.Int64
}

// A direction that wakes more than busyWakeups times within a second, or reads more than
// busyReads times in one wake-up, stops waiting in the Poller and keeps its goroutine: a busy
// direction's wake-ups would each cost a goroutine's start and an epoll_ctl more than a pump's.
const (
	busyWakeups = 32
	busyReads   = 4
)

func (p *pump) init(t *Tunnel, src End, dst net.Conn, toUpstream bool) {
	p.t, p.src, p.dst, p.pending, p.toUpstream = t, src.Conn, dst, src.Pending, toUpstream
	p.scan = newFrameScanner(toUpstream, t.limits.MaxMessageBytes)
	if p.raw = socketOf(src.Conn); p.raw != nil {
		// Bound once: a read allocates nothing.
		p.readFn, p.readNowFn = p.readRaw, p.readNow
		p.wait = p.raw
	} else {
		p.wait = src.Readable
	}
}

// run relays for the tunnel's life on the calling goroutine.
func (p *pump) run() {
	defer p.end()
	if p.relayPending() {
		p.pumpUntilEnd()
	}
}

// end is the direction's last act: the buffer goes back, the socket leaves the Poller's set,
// and the tunnel learns that one more direction ended.
func (p *pump) end() {
	p.giveBack()
	if p.t.poller != nil {
		p.t.poller.forget(p)
	}
	p.t.finish()
}

// relayPending relays what was read past the HTTP head; false when the pump must end.
func (p *pump) relayPending() bool {
	if len(p.pending) == 0 {
		return true
	}
	pending := p.pending
	p.pending = nil
	p.t.lastActivity.Store(time.Now().UnixNano())
	return p.relay(pending)
}

// pumpUntilEnd relays, waiting on its goroutine, until the direction ends.
func (p *pump) pumpUntilEnd() {
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

// runPolled runs a direction that waits in the Poller between bursts: it relays what its
// source has (woken: the socket became readable), arms the socket again and returns, so the
// goroutine ends. A busy direction, or one the Poller cannot take, stays on this goroutine as
// a pump until the tunnel ends.
func (p *pump) runPolled(woken bool) {
	if !p.relayPending() {
		p.end()
		return
	}
	for {
		if p.t.closeCode.Load() != 0 {
			p.sendClose()
			p.end()
			return
		}
		reads, stop, err := p.burst(woken)
		woken = false
		switch {
		case err != nil:
			p.endWith(err)
			p.end()
			return
		case stop:
			p.end()
			return
		}
		if p.busy(reads) || !p.t.poller.arm(p) {
			p.pumpUntilEnd()
			p.end()
			return
		}
		// Armed: the direction is the Poller's now. A Shutdown that looked for armed
		// directions before this one armed found none; its close code is seen here.
		if p.t.closeCode.Load() == 0 || !p.t.poller.claim(p) {
			return
		}
	}
}

// busy counts a wake-up and reports whether the direction should stop waiting in the Poller.
func (p *pump) busy(reads int) bool {
	now := time.Now().UnixNano()
	if now-p.windowStart > int64(time.Second) {
		p.windowStart, p.wakeups = now, 0
	}
	p.wakeups++
	return reads > busyReads || p.wakeups > busyWakeups
}

// burst relays what the source has now. It returns the reads that brought bytes, stop when the
// direction must end without passing an end on (the destination failed), or the source's end
// (io.EOF when it closed). A socket is read until it has nothing; a TLS connection, when woken,
// waits in a small read for what crypto/tls makes of the bytes that came (a record's rest may
// still be on its way), then gives what it holds without waiting.
func (p *pump) burst(woken bool) (reads int, stop bool, err error) {
	if p.raw == nil {
		if woken {
			stop, err := p.readConn()
			return 1, stop, err
		}
		p.take()
		err := p.drain()
		p.giveBack()
		if err == errRelayStopped {
			return 0, true, nil
		}
		return 0, false, err
	}
	p.take()
	defer p.giveBack()
	for p.t.closeCode.Load() == 0 {
		p.n, p.rerr, p.again = 0, nil, false
		if err := p.raw.Read(p.readNowFn); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && p.t.closeCode.Load() != 0 {
				return reads, false, nil // Shutdown: the loop sends the close frame
			}
			return reads, false, err
		}
		switch {
		case p.again:
			return reads, false, nil
		case p.n > 0:
			reads++
			p.t.lastActivity.Store(time.Now().UnixNano())
			if !p.relay(p.buf[:p.have+p.n]) {
				return reads, true, nil
			}
		case p.rerr != nil:
			return reads, false, p.rerr
		default:
			return reads, false, io.EOF
		}
	}
	return reads, false, nil
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
		if stop, err := p.readConn(); stop {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// readConn is one wait of pumpConn: a small read, then what follows it (drain). stop: the
// destination failed. A Shutdown that woke the wait returns neither.
func (p *pump) readConn() (stop bool, err error) {
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
			return true, nil
		}
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && p.t.closeCode.Load() != 0 {
		return false, nil // Shutdown woke the wait
	}
	return false, err
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
	if fwd > 0 && !p.write(data[:fwd]) {
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
