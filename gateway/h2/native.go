package h2

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The native engine: the gateway's own HTTP/2 connection layer (RFC 9113). x/net's Framer
// reads and checks frames and decodes HPACK; everything else is here. Compared with x/net's
// server behind the bridge (stream.go) a stream costs no http.Request, header map, context,
// timers or hand-offs between goroutines: the connection's reader turns a HEADERS frame into the
// HTTP/1.1 head that fasthttp parses and starts the stream's handler; the handler encodes its
// response straight into the connection's output buffer under the connection's lock; and the
// first handler to finish becomes the connection's writer, lets the others that are ready add
// theirs, and sends them all in one write (flush).

const (
	// defaultWindow is HTTP/2's initial flow-control window (RFC 9113, section 6.9.2).
	defaultWindow = 65535
	// maxWindow is the largest window HTTP/2 allows.
	maxWindow = 1<<31 - 1
	// maxFrameSize is the largest frame the gateway reads, HTTP/2's default (and nginx's): no
	// single frame makes it buffer more than 16 KiB.
	maxFrameSize = 16 << 10
	// outHighWater is how much output a connection buffers before a stream writing a body waits
	// for the writer: a client that reads slowly holds at most this much, plus heads.
	outHighWater = 256 << 10
	// maxQueuedControl is how many frames the gateway owes a client (PING and SETTINGS
	// acknowledgements, RST_STREAM, WINDOW_UPDATE) before it gives up on a client that sends
	// them without reading the answers (x/net's bound too).
	maxQueuedControl = 10000
	// maxPooledOutput is the largest output buffer given back to outPool.
	maxPooledOutput = 1 << 20
	// nativeReadBuffer is the connection's read buffer: several small frames in one read.
	nativeReadBuffer = 8 << 10
)

var (
	errStreamClosed = errors.New("h2: stream closed")
	errConnClosed   = errors.New("h2: connection closed")
)

// nconn is one client connection served by the native engine. The reader (serve) owns the
// Framer and the HPACK decoder; everything else is guarded by mu, which handlers take to write
// and the reader takes to change streams and windows. cond (on mu) wakes handlers waiting for
// window, for room in the output buffer, or for request body bytes.
type nconn struct {
	srv      *Server
	gen      *generation
	settings Settings
	conn     net.Conn
	br       *bufio.Reader
	fr       *http2.Framer
	hdec     *hpack.Decoder
	hb       headerBlock

	mu   sync.Mutex
	cond sync.Cond
	// streams are the streams whose handler has not finished (or is queued), not reset.
	streams     map[uint32]*nstream
	maxClientID uint32 // the highest stream id the client has opened
	running     int    // handlers running, those of reset streams included
	queued      []*nstream
	// Output: frames wait in out, a buffer from outPool (held in outBox) while there are any;
	// the writer takes it, writes it and gives it back, so a connection with nothing to send
	// holds no buffer.
	out              []byte
	outBox           *outBuffer
	writing          bool
	ctrlQueued       int
	werr             error // the first write error; nothing more is written
	closeWhenFlushed bool  // close once out is written (after a GOAWAY)
	closed           bool
	readerDone       bool
	lingering        atomic.Bool
	goingAway        bool
	// Flow control: what the client lets the gateway send, and what it may still send us.
	sendWindow    int64
	peerInitial   int64
	peerMaxFrame  int
	inflow        int64
	pendingCredit int64
	idleTimer     *time.Timer
	idleSince     time.Time
}

// serveNative serves c with the native engine until the connection ends.
func (srv *Server) serveNative(g *generation, c net.Conn) {
	nc := &nconn{
		srv: srv, gen: g, settings: g.settings, conn: c,
		streams:      map[uint32]*nstream{},
		sendWindow:   defaultWindow,
		peerInitial:  defaultWindow,
		peerMaxFrame: maxFrameSize,
		inflow:       int64(g.settings.MaxUploadBufferPerConnection),
	}
	nc.cond.L = &nc.mu
	defer g.unregister(nc)
	nc.serve()
}

// serve reads the client's frames until the connection ends or fails.
func (c *nconn) serve() {
	defer c.shutdown()
	c.br = bufio.NewReaderSize(c.conn, nativeReadBuffer)
	var preface [len(Preface)]byte
	_ = c.conn.SetReadDeadline(time.Now().Add(c.settings.IdleTimeout))
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || string(preface[:]) != Preface {
		c.connError(http2.ErrCodeProtocol)
		return
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetMaxReadFrameSize(maxFrameSize)
	c.fr.SetReuseFrames()
	c.hdec = hpack.NewDecoder(4096, c.emit)
	c.hdec.SetMaxStringLength(int(advertisedHeaderList(c.settings)))

	c.mu.Lock()
	c.out = appendSettings(c.outBuf(), c.settings)
	if grow := int64(c.settings.MaxUploadBufferPerConnection) - defaultWindow; grow > 0 {
		c.out = appendWindowUpdate(c.outBuf(), 0, uint32(grow))
	}
	c.idleSince = time.Now()
	c.idleTimer = time.AfterFunc(c.settings.IdleTimeout, c.idleCheck)
	if !c.gen.register(c) {
		c.goAwayLocked(http2.ErrCodeNo) // its settings were replaced while it connected
	}
	c.mu.Unlock()
	c.flush()

	first := true
	for {
		f, err := c.fr.ReadFrame()
		if c.lingering.Load() {
			c.drain()
			return
		}
		if err != nil {
			if !c.readError(err) {
				c.drain()
				return
			}
			if c.br.Buffered() == 0 {
				c.flush()
			}
			continue
		}
		if first {
			first = false
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.connError(http2.ErrCodeProtocol) // the preface ends with SETTINGS (section 3.4)
				return
			}
		}
		if code, ok := c.handle(f); !ok {
			c.connError(code)
			return
		}
		if c.br.Buffered() == 0 {
			c.flush() // control frames owed, sent before waiting for more
		}
	}
}

// readError handles a failed read: a stream error resets that stream and reading goes on;
// anything else ends the connection (with GOAWAY when the client broke the protocol).
func (c *nconn) readError(err error) bool {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		// A HEADERS frame refused before its block was decoded may be continued; its
		// CONTINUATION frames cannot be decoded either, so they end the connection.
		c.hb = headerBlock{id: se.StreamID, invalid: errSkippedBlock, fields: c.hb.fields[:0]}
		c.mu.Lock()
		if se.StreamID > c.maxClientID && se.StreamID%2 == 1 {
			c.maxClientID = se.StreamID // a HEADERS frame refused: its id is used up
		}
		c.resetLocked(se.StreamID, se.Code)
		c.mu.Unlock()
		return true
	case errors.As(err, &ce):
		c.connError(http2.ErrCode(ce))
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.connError(http2.ErrCodeFrameSize)
	}
	return false
}

// handle processes one frame. It returns false with the code of a connection error.
func (c *nconn) handle(f http2.Frame) (http2.ErrCode, bool) {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		if f.StreamID%2 == 0 {
			return http2.ErrCodeProtocol, false // clients open odd streams (section 5.1.1)
		}
		return c.onHeadersFrame(f)
	case *http2.ContinuationFrame:
		return c.decodeFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return 0, true
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.out = appendPing(c.outBuf(), f.Data)
		return c.owe()
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID > c.maxClientID {
			return http2.ErrCodeProtocol, false // on an idle stream (section 6.4)
		}
		if ns := c.streams[f.StreamID]; ns != nil {
			c.dropLocked(ns)
		}
		return 0, true
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.mu.Lock()
			c.resetLocked(f.StreamID, http2.ErrCodeProtocol) // depends on itself (section 5.3.1)
			c.mu.Unlock()
		}
		return 0, true
	case *http2.GoAwayFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.ErrCode != http2.ErrCodeNo {
			return http2.ErrCodeNo, false // the client failed: nothing more will be read
		}
		// The client opens no more streams; the ones open finish, and it closes the
		// connection when it is done with them (or idle_timeout does).
		c.goingAway = true
		return 0, true
	case *http2.PushPromiseFrame:
		return http2.ErrCodeProtocol, false // a client cannot push (section 8.4)
	}
	return 0, true // unknown frame types are ignored (section 5.5)
}

// owe counts a control frame owed to the client and reports whether it stays under the bound.
func (c *nconn) owe() (http2.ErrCode, bool) {
	c.ctrlQueued++
	if c.ctrlQueued > maxQueuedControl {
		return http2.ErrCodeEnhanceYourCalm, false
	}
	return 0, true
}

func (c *nconn) onSettings(f *http2.SettingsFrame) (http2.ErrCode, bool) {
	if f.IsAck() {
		return 0, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitial
			c.peerInitial = int64(s.Val)
			for _, ns := range c.streams {
				ns.sendWindow += delta
				if ns.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.cond.Broadcast()
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		}
		return nil
	})
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return http2.ErrCode(ce), false
	}
	c.out = appendFrameHeader(c.outBuf(), 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	return c.owe()
}

func (c *nconn) onWindowUpdate(f *http2.WindowUpdateFrame) (http2.ErrCode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return http2.ErrCodeFlowControl, false
		}
		c.cond.Broadcast()
		return 0, true
	}
	ns := c.streams[f.StreamID]
	if ns == nil {
		if f.StreamID > c.maxClientID {
			return http2.ErrCodeProtocol, false // on an idle stream
		}
		return 0, true // a stream that ended: the update may have crossed its end
	}
	ns.sendWindow += inc
	if ns.sendWindow > maxWindow {
		c.resetLocked(f.StreamID, http2.ErrCodeFlowControl)
	}
	c.cond.Broadcast()
	return 0, true
}

func (c *nconn) onData(f *http2.DataFrame) (http2.ErrCode, bool) {
	id := f.StreamID
	size := int64(f.Length) // padding included: it counts against the windows
	data := f.Data()
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.inflow {
		return http2.ErrCodeFlowControl, false
	}
	c.inflow -= size
	ns := c.streams[id]
	if ns == nil || ns.remoteClosed {
		if id > c.maxClientID {
			return http2.ErrCodeProtocol, false // on an idle stream
		}
		// A stream that ended, or whose client already ended it: the bytes are dropped and
		// the connection's window given back.
		c.creditLocked(nil, size)
		c.resetLocked(id, http2.ErrCodeStreamClosed)
		return 0, true
	}
	if size > ns.inflow {
		c.creditLocked(nil, size)
		c.resetLocked(id, http2.ErrCodeFlowControl)
		return 0, true
	}
	ns.inflow -= size
	if pad := size - int64(len(data)); pad > 0 {
		c.creditLocked(ns, pad)
	}
	ns.received += int64(len(data))
	if ns.declared >= 0 && ns.received > ns.declared {
		c.creditLocked(nil, int64(len(data)))
		c.resetLocked(id, http2.ErrCodeProtocol) // more than its Content-Length (section 8.1.1)
		return 0, true
	}
	ns.body = append(ns.body, data...)
	if f.StreamEnded() {
		c.endRequestLocked(ns)
		return 0, true
	}
	c.cond.Broadcast()
	return 0, true
}

// endRequestLocked marks the end of a stream's request (END_STREAM after its body or with its
// trailers): a body of another length than its Content-Length resets the stream (section
// 8.1.1); otherwise a reader waiting for the body's end is woken.
func (c *nconn) endRequestLocked(ns *nstream) {
	ns.remoteClosed = true
	if ns.declared >= 0 && ns.received != ns.declared {
		c.resetLocked(ns.id, http2.ErrCodeProtocol)
		return
	}
	c.cond.Broadcast()
}

// onHeaders opens a stream, or ends one with its trailer section.
func (c *nconn) onHeaders(f *headerBlock) (http2.ErrCode, bool) {
	id := f.id
	c.mu.Lock()
	defer c.mu.Unlock()
	if ns := c.streams[id]; ns != nil {
		if ns.remoteClosed {
			return http2.ErrCodeStreamClosed, false
		}
		if !f.endStream || f.pseudo > 0 {
			c.resetLocked(id, http2.ErrCodeProtocol) // a trailer section ends the stream, without pseudo-fields
			return 0, true
		}
		ns.setTrailers(f.regularFields())
		c.endRequestLocked(ns)
		return 0, true
	}
	if id <= c.maxClientID {
		return http2.ErrCodeProtocol, false // a stream id not above the last (section 5.1.1)
	}
	c.maxClientID = id
	if c.goingAway {
		return 0, true // after GOAWAY new streams are ignored (section 6.8)
	}
	if f.hasPriority && f.priority.StreamDep == id {
		c.resetLocked(id, http2.ErrCodeProtocol)
		return 0, true
	}
	if len(c.streams) >= int(c.settings.MaxConcurrentStreams) {
		c.srv.streams[StreamRefused].Add(1)
		c.resetLocked(id, http2.ErrCodeRefusedStream)
		return 0, true
	}
	ns := newNStream(c, id)
	if err := ns.buildHead(f, c.settings.MaxHeaderListBytes); err != nil {
		ns.release()
		c.resetLocked(id, http2.ErrCodeProtocol)
		return 0, true
	}
	ns.remoteClosed = f.endStream
	c.streams[id] = ns
	if len(c.streams) == 1 {
		c.idleSince = time.Time{}
	}
	if c.running >= int(c.settings.MaxConcurrentStreams) {
		// Handlers of streams the client has reset still run: their streams no longer count,
		// but a client that opens and resets streams faster than they end must not make the
		// gateway run handlers without bound (CVE-2023-44487). The stream waits for one; a
		// client with more waiting than it may have open is stopped.
		if len(c.queued) >= 4*int(c.settings.MaxConcurrentStreams) {
			return http2.ErrCodeEnhanceYourCalm, false
		}
		c.queued = append(c.queued, ns)
		return 0, true
	}
	c.running++
	go ns.serve()
	return 0, true
}

// resetLocked sends RST_STREAM for id with code and forgets the stream.
func (c *nconn) resetLocked(id uint32, code http2.ErrCode) {
	c.out = appendRSTStream(c.outBuf(), id, code)
	c.ctrlQueued++
	if ns := c.streams[id]; ns != nil {
		c.dropLocked(ns)
	}
}

// dropLocked forgets a stream that was reset: its handler, if it runs, sees reset when it
// writes, and a reader of its body fails.
func (c *nconn) dropLocked(ns *nstream) {
	ns.reset = true
	delete(c.streams, ns.id)
	if len(ns.body) > 0 {
		c.creditLocked(nil, int64(len(ns.body))) // bytes nobody will read
		ns.body = ns.body[:0]
	}
	c.cond.Broadcast()
	c.noteIdleLocked()
	c.closeIfDoneLocked()
}

// creditLocked gives n bytes back to the client's windows: the connection's, and the stream's
// unless ns is nil. WINDOW_UPDATE frames go out once a quarter of a window is owed, so a body
// read in small pieces does not cost a frame per piece.
func (c *nconn) creditLocked(ns *nstream, n int64) {
	c.pendingCredit += n
	c.inflow += n
	if c.pendingCredit >= int64(c.settings.MaxUploadBufferPerConnection)/4 {
		c.out = appendWindowUpdate(c.outBuf(), 0, uint32(c.pendingCredit))
		c.pendingCredit = 0
	}
	if ns == nil || ns.reset {
		return
	}
	ns.pendingCredit += n
	ns.inflow += n
	if ns.pendingCredit >= int64(c.settings.MaxUploadBufferPerStream)/4 && !ns.remoteClosed {
		c.out = appendWindowUpdate(c.outBuf(), ns.id, uint32(ns.pendingCredit))
		ns.pendingCredit = 0
	}
}

// noteIdleLocked starts the idle clock when the last stream ends.
func (c *nconn) noteIdleLocked() {
	if len(c.streams) == 0 && c.idleSince.IsZero() {
		c.idleSince = time.Now()
	}
}

// idleCheck runs when the idle timer fires: a connection without streams for idle_timeout is
// sent GOAWAY and closed; otherwise the timer is set for the rest.
func (c *nconn) idleCheck() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	idle := c.settings.IdleTimeout
	if len(c.streams) == 0 && !c.idleSince.IsZero() {
		if left := idle - time.Since(c.idleSince); left > 0 {
			idle = left
		} else {
			c.goAwayLocked(http2.ErrCodeNo)
			c.mu.Unlock()
			c.flush()
			return
		}
	}
	c.idleTimer.Reset(idle)
	c.mu.Unlock()
}

// goAwayLocked sends GOAWAY with code: no stream after the last one opened will be served, and
// the connection closes once its streams have ended (at once for an error).
func (c *nconn) goAwayLocked(code http2.ErrCode) {
	if !c.goingAway || code != http2.ErrCodeNo {
		c.out = appendGoAway(c.outBuf(), c.maxClientID, code)
	}
	c.goingAway = true
	if code != http2.ErrCodeNo {
		c.closeWhenFlushed = true
		return
	}
	c.closeIfDoneLocked()
}

// closeIfDoneLocked closes the connection, once its output is written, when it is going away
// and nothing runs on it any more.
func (c *nconn) closeIfDoneLocked() {
	if c.goingAway && len(c.streams) == 0 && c.running == 0 && len(c.queued) == 0 {
		c.closeWhenFlushed = true
		if !c.writing && len(c.out) == 0 {
			c.closeLocked()
		}
	}
}

// closeLocked ends the connection. While the reader runs it lingers instead: the write side is
// shut (the client reads our GOAWAY, then end of stream) and the reader discards what the
// client still sends for up to lingerTimeout before closing. Closing a socket with unread bytes
// would send a reset, and a client's kernel may drop the GOAWAY it has not read yet.
func (c *nconn) closeLocked() {
	if c.closed {
		return
	}
	if !c.readerDone {
		if !c.lingering.Load() {
			c.lingering.Store(true)
			if c.werr == nil {
				c.werr = errConnClosed
			}
			closeWrite(c.conn)
			_ = c.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		}
		return
	}
	c.closed = true
	_ = c.conn.Close()
}

// lingerTimeout bounds how long a closing connection waits for the client to close its side.
const lingerTimeout = time.Second

// closeWrite shuts the write side of the TCP connection under c's wrappers, if it has one.
func closeWrite(c net.Conn) {
	for {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}

// drain discards what a lingering connection's client still sends, until it closes or the
// linger ends.
func (c *nconn) drain() {
	if c.lingering.Load() {
		_, _ = io.Copy(io.Discard, io.LimitReader(c.br, 1<<20))
	}
}

// connError ends the connection with GOAWAY code (section 5.4.1). Called by the reader, which
// then drains.
func (c *nconn) connError(code http2.ErrCode) {
	c.mu.Lock()
	c.goAwayLocked(code)
	c.mu.Unlock()
	c.flush()
	c.mu.Lock()
	c.closeLocked()
	c.mu.Unlock()
	c.drain()
}

// shutdown runs when the reader ends: streams still open see the connection gone.
func (c *nconn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.werr == nil {
		c.werr = errConnClosed
	}
	for _, ns := range c.streams {
		ns.reset = true
	}
	clear(c.streams)
	for _, ns := range c.queued {
		ns.release()
	}
	c.queued = nil
	c.readerDone = true
	c.closeLocked()
	c.cond.Broadcast()
}

// flush writes the output. The first goroutine to find output and no writer becomes the
// writer: it first yields, so handlers that the same network poll made ready add their
// responses, then writes until the output is empty. Others leave their frames to it.
func (c *nconn) flush() {
	c.mu.Lock()
	if c.writing || len(c.out) == 0 {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	runtime.Gosched()
	c.mu.Lock()
	for len(c.out) > 0 && c.werr == nil {
		buf, box := c.out, c.outBox
		c.out, c.outBox = nil, nil
		c.ctrlQueued = 0
		c.mu.Unlock()
		err := c.write(buf)
		box.put(buf)
		c.mu.Lock()
		if err != nil && c.werr == nil {
			c.werr = err
			c.closeLocked()
		}
		c.cond.Broadcast() // room in the buffer
	}
	c.writing = false
	if c.werr != nil && c.outBox != nil {
		c.outBox.put(c.out)
		c.out, c.outBox = nil, nil
	}
	if c.closeWhenFlushed {
		c.closeLocked()
	}
	c.mu.Unlock()
}

func (c *nconn) write(b []byte) error {
	if wt := c.settings.WriteTimeout; wt > 0 {
		_ = c.conn.SetWriteDeadline(time.Now().Add(wt))
	}
	_, err := c.conn.Write(b)
	return err
}

// waitForRoomLocked waits while the output is over its high-water mark, writing it when no one
// else is. It returns the connection's write error, if any.
func (c *nconn) waitForRoomLocked() error {
	for len(c.out) >= outHighWater && c.werr == nil {
		if !c.writing {
			c.mu.Unlock()
			c.flush()
			c.mu.Lock()
			continue
		}
		c.cond.Wait()
	}
	return c.werr
}

// streamDone is called when a stream's handler has written its response.
func (c *nconn) streamDone(ns *nstream) {
	c.mu.Lock()
	ns.seq.Add(1) // a body reader still holding the stream fails from now on
	if !ns.reset {
		if !ns.remoteClosed {
			// The response is whole before the request: the client may stop sending
			// (section 8.1).
			c.out = appendRSTStream(c.outBuf(), ns.id, http2.ErrCodeNo)
		}
		delete(c.streams, ns.id)
		if n := int64(len(ns.body)); n > 0 {
			c.creditLocked(nil, n)
		}
	}
	c.running--
	for len(c.queued) > 0 && c.running < int(c.settings.MaxConcurrentStreams) {
		next := c.queued[0]
		c.queued = c.queued[1:]
		if next.reset {
			next.release()
			continue
		}
		c.running++
		go next.serve()
	}
	c.noteIdleLocked()
	c.closeIfDoneLocked()
	c.mu.Unlock()
}

// outBuffer is an output buffer in outPool (a pointer, so that pooling it allocates nothing).
type outBuffer struct{ b []byte }

var outPool = sync.Pool{New: func() any { return &outBuffer{b: make([]byte, 0, 16<<10)} }}

// outBuf is the output buffer to append to, taken from the pool when there is none. Called with
// mu held.
func (c *nconn) outBuf() []byte {
	if c.outBox == nil {
		c.outBox = outPool.Get().(*outBuffer)
		c.out = c.outBox.b[:0]
	}
	return c.out
}

// put gives the written buffer b (grown from o's) back to the pool.
func (o *outBuffer) put(b []byte) {
	if cap(b) > maxPooledOutput {
		return // a rare huge burst: not kept for every connection after it
	}
	o.b = b[:0]
	outPool.Put(o)
}

// Frame encoding (RFC 9113, section 4.1 and 6).

func appendFrameHeader(b []byte, length int, t http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags),
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
}

func appendSettings(b []byte, s Settings) []byte {
	b = appendFrameHeader(b, 3*6, http2.FrameSettings, 0, 0)
	b = appendSetting(b, http2.SettingMaxConcurrentStreams, s.MaxConcurrentStreams)
	b = appendSetting(b, http2.SettingInitialWindowSize, uint32(s.MaxUploadBufferPerStream))
	return appendSetting(b, http2.SettingMaxHeaderListSize, advertisedHeaderList(s))
}

// advertisedHeaderList is the SETTINGS_MAX_HEADER_LIST_SIZE offered: the head limit plus the
// 32 bytes HTTP/2 counts per field for ten fields, as x/net offers, so a head that a client
// keeps under it but that does not fit the limit as HTTP/1.1 gets 431, not a refusal by the
// client.
func advertisedHeaderList(s Settings) uint32 { return uint32(s.MaxHeaderListBytes + 10*32) }

func appendSetting(b []byte, id http2.SettingID, v uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(id))
	return binary.BigEndian.AppendUint32(b, v)
}

func appendWindowUpdate(b []byte, id, inc uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(b, inc)
}

func appendRSTStream(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendPing(b []byte, data [8]byte) []byte {
	b = appendFrameHeader(b, 8, http2.FramePing, http2.FlagPingAck, 0)
	return append(b, data[:]...)
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, last)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

// appendHeaders appends a header block as HEADERS and, beyond max bytes a frame, CONTINUATION
// frames.
func appendHeaders(b []byte, id uint32, block []byte, end bool, max int) []byte {
	first := true
	for {
		n := min(len(block), max)
		var flags http2.Flags
		if n == len(block) {
			flags |= http2.FlagHeadersEndHeaders
		}
		t := http2.FrameContinuation
		if first {
			t = http2.FrameHeaders
			if end {
				flags |= http2.FlagHeadersEndStream
			}
		}
		b = appendFrameHeader(b, n, t, flags, id)
		b = append(b, block[:n]...)
		block = block[n:]
		first = false
		if len(block) == 0 {
			return b
		}
	}
}
