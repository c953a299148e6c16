package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

// Buffering is an upstream's response buffering (nginx's proxy_buffering): a body over the
// 64 KiB read whole anyway is read from the upstream at the upstream's pace, up to Memory into
// memory and the rest, up to MaxTempFile, into an unlinked temporary file, while the client is
// sent what has arrived so far at its own pace; the connection goes back to the pool as soon as
// the body is in the buffer. A slow client holds a buffer, never an upstream connection, and a
// slow upstream's first bytes reach the client at once. Immutable; nil means off.
type Buffering struct {
	Memory      int64
	MaxTempFile int64
	TempDir     string // "" is os.TempDir()
}

func newBuffering(c *config.Buffering) *Buffering {
	if c.Off {
		return nil
	}
	return &Buffering{Memory: c.Memory.Bytes(), MaxTempFile: c.MaxTempFile.Bytes(), TempDir: c.TempDir}
}

// wants reports whether a response body of declared length cl (-1 chunked, -2 until close) is
// buffered. A declared length that cannot fit streams at once. Server-sent events stream: each
// event must reach the client when it is sent, and the stream may never end.
func (b *Buffering) wants(h *fasthttp.ResponseHeader, cl int) bool {
	if b == nil {
		return false
	}
	if cl >= 0 && int64(cl) > b.Memory+b.MaxTempFile {
		return false
	}
	ct := h.ContentType()
	return len(ct) < len(eventStream) || !bytes.EqualFold(ct[:len(eventStream)], eventStream)
}

var eventStream = []byte("text/event-stream")

// A spool is one response body being read from the upstream into memory and a temporary file
// by its filler goroutine, while its reader (a spooledBody, fed to fasthttp as the response body
// stream) sends it on to the client.
//
// Ownership: the filler alone writes the buffer, and publishes each step in avail (bytes
// buffered) and then, once, in state; the reader reads only below avail, so the two never touch
// the same bytes. The bodyStream (and its upstream connection) belongs to the filler until
// state leaves spFilling: it is then closed (spDone, spFailed, spAbandoned) or handed to the
// reader (spHanded). The filler goroutine is owned by the spool: it ends when the body ends,
// breaks, reaches the bound, or when the reader closes first (spAbandoned: closing the
// upstream connection ends the filler's read at once). The last of the two to finish releases
// the spool.
type spool struct {
	avail atomic.Int64 // bytes buffered (memory, then file), readable below this
	state atomic.Int32
	refs  atomic.Int32  // filler + reader
	wake  chan struct{} // capacity 1: the filler's "something changed" to a waiting reader

	// Set before the filler starts, read-only after.
	target  *Target
	policy  passivePolicy
	conn    net.Conn // the upstream connection, closed by a reader that abandons the body
	memory  int64    // bytes that go to memory before the file
	maxFile int64
	tempDir string

	// Written by the filler before the avail or state store that publishes them.
	segs    [][]byte // memory, in segments of spoolSegment bytes (the last one maybe shorter)
	file    *os.File
	err     error       // spFailed: why
	tail    *bodyStream // spHanded: the rest of the body, read by the reader
	pending []byte      // spHanded: read from the upstream, not written to the file (disk full)
	scratch []byte      // the filler's copy buffer on its way to the file
}

// States of a spool: spFilling until the filler is done with the upstream stream.
const (
	spFilling   int32 = iota
	spDone            // the whole body is in the buffer; the connection went back to the pool
	spFailed          // the upstream broke before the end of the body (err)
	spHanded          // the bound was reached: after the buffer, the reader reads the rest from tail
	spAbandoned       // the reader closed first; the filler discards the connection
)

// spoolSegment is the size of one piece of a spool's memory. Pieces never move once written,
// so the reader reads them while the filler fills the next.
const spoolSegment = 64 << 10

// spoolScratch is the size of one read from the upstream on its way to the temporary file.
const spoolScratch = 32 << 10

// spoolKeep bounds the memory a pooled spool keeps for its next use.
const spoolKeep = 4 << 20

var spoolPool = sync.Pool{New: func() any { return &spool{wake: make(chan struct{}, 1)} }}

// spool buffers the body of resp, which s is about to stream: a filler goroutine reads s into
// memory and a temporary file, and resp's body stream reads the buffer behind it.
func (t *Target) spool(s *bodyStream, resp *fasthttp.Response, cl int, x *RoundTrip) error {
	sp := spoolPool.Get().(*spool)
	sp.target, sp.policy, sp.conn = t, x.policy, s.pc.conn
	sp.memory, sp.maxFile, sp.tempDir = x.buffering.Memory, x.buffering.MaxTempFile, x.buffering.TempDir
	// The segment list is sized before the filler starts: the filler then writes only its
	// elements, each before the avail store that lets the reader see it.
	nsegs := int((sp.memory + spoolSegment - 1) / spoolSegment)
	if cap(sp.segs) < nsegs {
		sp.segs = append(sp.segs[:cap(sp.segs)], make([][]byte, nsegs-cap(sp.segs))...)
	}
	sp.segs = sp.segs[:nsegs]
	sp.refs.Store(2)
	go sp.fill(s)
	sb := &spooledBody{sp: sp}
	// The client gets the upstream's framing: a chunked body stays chunked (and so, for
	// instance, is not compressed), buffered or not.
	resp.SetBodyStream(sb, cl)
	t.recordSuccess()
	return nil
}

// fill is the filler goroutine: it reads s into the buffer until the body ends, breaks or
// reaches the bound, or the reader abandons it.
func (sp *spool) fill(s *bodyStream) {
	defer sp.release()
	err := sp.fillFrom(s)
	switch {
	case err != nil:
		kind := KindRead
		switch {
		case errors.Is(err, errTooLarge):
			kind = KindTooLarge
		case isTimeout(err):
			kind = KindTimeout
		}
		sp.err = &Error{Kind: kind, Addr: sp.target.Addr, Err: err}
		if sp.state.CompareAndSwap(spFilling, spFailed) && kind.countsAsFailure() {
			sp.target.recordFailure(time.Now().UnixNano(), sp.policy)
		}
		s.reusable = false
		_ = s.Close()
	case s.done:
		if sp.state.CompareAndSwap(spFilling, spDone) {
			sp.target.buffered.Add(1)
		} else {
			s.reusable = false // the reader closed the connection
		}
		_ = s.Close() // the connection goes back to the pool now
	default:
		sp.tail = s
		if !sp.state.CompareAndSwap(spFilling, spHanded) {
			sp.tail = nil
			s.reusable = false
			_ = s.Close()
		}
	}
	sp.signal()
}

// fillFrom reads s into memory and then the temporary file. It returns nil when s ended
// (s.done) or the rest must stream (the bound is reached, or the temporary file cannot be
// created or written: what was read is kept in pending), and the upstream's error otherwise.
func (sp *spool) fillFrom(s *bodyStream) error {
	var filled int64
	for filled < sp.memory {
		k := int(filled / spoolSegment)
		size := int(min(spoolSegment, sp.memory-int64(k)*spoolSegment))
		if cap(sp.segs[k]) < size {
			sp.segs[k] = make([]byte, size)
		}
		seg := sp.segs[k][:size]
		for off := int(filled % spoolSegment); off < size; {
			if sp.state.Load() == spAbandoned {
				return nil
			}
			n, err := s.Read(seg[off:])
			off += n
			filled += int64(n)
			if n > 0 {
				sp.avail.Store(filled)
				sp.signal()
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	if sp.maxFile == 0 || s.done {
		return nil
	}
	f, err := createUnlinked(sp.tempDir)
	if err != nil {
		return nil // the rest streams from the upstream connection
	}
	sp.file = f
	sp.target.spilled.Add(1)
	if sp.scratch == nil {
		sp.scratch = make([]byte, spoolScratch)
	}
	var fileSize int64
	for fileSize < sp.maxFile && !s.done {
		if sp.state.Load() == spAbandoned {
			return nil
		}
		n, err := s.Read(sp.scratch[:min(int64(len(sp.scratch)), sp.maxFile-fileSize)])
		if n > 0 {
			w, werr := f.Write(sp.scratch[:n])
			fileSize += int64(w)
			sp.avail.Store(sp.memory + fileSize)
			sp.signal()
			if werr != nil { // disk full: keep what was read, stream the rest
				sp.pending = sp.scratch[w:n]
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// signal wakes the reader if it waits; a wake-up already pending is enough.
func (sp *spool) signal() {
	select {
	case sp.wake <- struct{}{}:
	default:
	}
}

// release drops one of the two references; the last one frees the buffer.
func (sp *spool) release() {
	if sp.refs.Add(-1) != 0 {
		return
	}
	if sp.file != nil {
		_ = sp.file.Close()
	}
	segs, scratch := sp.segs, sp.scratch
	if int64(len(segs))*spoolSegment > spoolKeep {
		segs = nil // a large memory bound: don't keep its buffers past the response
	}
	select { // a wake-up nobody took
	case <-sp.wake:
	default:
	}
	*sp = spool{wake: sp.wake, segs: segs, scratch: scratch}
	spoolPool.Put(sp)
}

// createUnlinked opens a temporary file and removes its name at once: the open descriptor is
// all that keeps it, so a crash or a kill leaves nothing on disk.
func createUnlinked(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "archway-body-*")
	if err != nil {
		return nil, fmt.Errorf("response buffer: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("response buffer: %w", err)
	}
	return f, nil
}

// spooledBody is the client's side of a spool: it reads what the filler buffered, waiting for
// more while the upstream is slower than the client, then (when the body did not fit) the rest
// of the upstream stream itself. fasthttp reads and closes it from the client connection's
// goroutine; one spooledBody is never used concurrently.
type spooledBody struct {
	sp      *spool
	off     int64 // bytes of the buffer read
	pending int   // spHanded: bytes of sp.pending read
}

// Read implements io.Reader.
func (sb *spooledBody) Read(p []byte) (int, error) {
	sp := sb.sp
	if sp == nil {
		return 0, io.EOF
	}
	for {
		// state before avail: once state is final, the avail read after it is final too.
		state := sp.state.Load()
		if avail := sp.avail.Load(); sb.off < avail {
			return sb.readBuffered(p, avail)
		}
		switch state {
		case spFilling:
			<-sp.wake
		case spDone:
			return 0, io.EOF
		case spFailed:
			return 0, sp.err
		case spHanded:
			if sb.pending < len(sp.pending) {
				n := copy(p, sp.pending[sb.pending:])
				sb.pending += n
				return n, nil
			}
			return sp.tail.Read(p)
		default:
			return 0, io.ErrClosedPipe
		}
	}
}

// readBuffered reads from memory or the file, below avail.
func (sb *spooledBody) readBuffered(p []byte, avail int64) (int, error) {
	sp := sb.sp
	if sb.off < sp.memory {
		seg := sp.segs[sb.off/spoolSegment]
		from := sb.off % spoolSegment
		to := min(int64(len(seg)), from+avail-sb.off)
		n := copy(p, seg[from:to])
		sb.off += int64(n)
		return n, nil
	}
	if int64(len(p)) > avail-sb.off {
		p = p[:avail-sb.off]
	}
	n, err := sp.file.ReadAt(p, sb.off-sp.memory)
	sb.off += int64(n)
	if errors.Is(err, io.EOF) {
		err = nil
		if n == 0 {
			err = io.ErrUnexpectedEOF // the file shrank under us
		}
	}
	return n, err
}

// Close releases the client's side. A filler still reading is stopped: its upstream connection
// is closed, so its read ends now instead of at the upstream's pace.
func (sb *spooledBody) Close() error {
	sp := sb.sp
	if sp == nil {
		return nil
	}
	sb.sp = nil
	switch {
	case sp.state.CompareAndSwap(spFilling, spAbandoned):
		_ = sp.conn.Close()
	case sp.state.Load() == spHanded:
		_ = sp.tail.Close()
	}
	sp.release()
	return nil
}

// detachSpooled moves a spooled body to a new owner, as Detach does for a body stream.
func detachSpooled(sb *spooledBody) io.ReadCloser {
	if sb.sp == nil {
		return nil
	}
	d := &spooledBody{}
	*d = *sb
	*sb = spooledBody{}
	return d
}
