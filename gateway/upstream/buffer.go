package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

// Buffering is an upstream's response buffering (nginx's proxy_buffering): a body over the
// 64 KiB read whole anyway is read from the upstream at the upstream's pace, up to Memory into
// memory and the rest, up to MaxTempFile, into an unlinked temporary file; the connection then
// goes back to the pool and the client is fed from the buffer at its own pace. A slow client
// holds a buffer, never an upstream connection. Immutable; nil means off.
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

// spooledBody is a response body read from the upstream ahead of the client: the part in
// memory, then the part in the temporary file, then bytes read but not written to the file (a
// failed write), then, when the body did not fit, the rest of the upstream stream itself.
// fasthttp reads and closes it from the client connection's goroutine; one spooledBody is never
// used concurrently.
type spooledBody struct {
	mem      []byte
	memOff   int
	file     *os.File
	fileSize int64
	fileOff  int64
	pending  []byte // read from the upstream, not written to the file
	scratch  []byte // copy buffer for the file; pending points into it
	tail     *bodyStream
	live     bool
}

// spoolScratch is the size of one read from the upstream on its way to the temporary file.
const spoolScratch = 32 << 10

var spooledPool = sync.Pool{New: func() any { return new(spooledBody) }}

// fill reads s into memory and the temporary file. It returns nil when s ended (s.done) or did
// not fit (the caller streams the rest from s), and the upstream's error otherwise. A temporary
// file that cannot be created or written is not an error: the rest of the body streams.
func (sb *spooledBody) fill(s *bodyStream, b *Buffering) error {
	for int64(len(sb.mem)) < b.Memory {
		if len(sb.mem) == cap(sb.mem) {
			grown := make([]byte, len(sb.mem), min(int64(max(2*cap(sb.mem), 2*bufferLimit)), b.Memory))
			copy(grown, sb.mem)
			sb.mem = grown
		}
		n, err := s.Read(sb.mem[len(sb.mem):cap(sb.mem)])
		sb.mem = sb.mem[:len(sb.mem)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if b.MaxTempFile == 0 || s.done {
		return nil
	}
	f, err := createUnlinked(b.TempDir)
	if err != nil {
		return nil // the rest streams from the upstream connection
	}
	sb.file = f
	if sb.scratch == nil {
		sb.scratch = make([]byte, spoolScratch)
	}
	for sb.fileSize < b.MaxTempFile && !s.done {
		n, err := s.Read(sb.scratch[:min(int64(len(sb.scratch)), b.MaxTempFile-sb.fileSize)])
		if n > 0 {
			w, werr := f.Write(sb.scratch[:n])
			sb.fileSize += int64(w)
			if werr != nil { // disk full: keep what was read, stream the rest
				sb.pending = sb.scratch[w:n]
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

// Read implements io.Reader.
func (sb *spooledBody) Read(p []byte) (int, error) {
	if sb.memOff < len(sb.mem) {
		n := copy(p, sb.mem[sb.memOff:])
		sb.memOff += n
		return n, nil
	}
	if sb.fileOff < sb.fileSize {
		if int64(len(p)) > sb.fileSize-sb.fileOff {
			p = p[:sb.fileSize-sb.fileOff]
		}
		n, err := sb.file.ReadAt(p, sb.fileOff)
		sb.fileOff += int64(n)
		if err == io.EOF && sb.fileOff < sb.fileSize {
			err = io.ErrUnexpectedEOF // the file shrank under us
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return n, err
	}
	if len(sb.pending) > 0 {
		n := copy(p, sb.pending)
		sb.pending = sb.pending[n:]
		return n, nil
	}
	if sb.tail != nil {
		return sb.tail.Read(p)
	}
	return 0, io.EOF
}

// Close releases the buffer (and ends the upstream exchange when the body did not fit).
func (sb *spooledBody) Close() error {
	if !sb.live {
		return nil
	}
	if sb.tail != nil {
		_ = sb.tail.Close()
	}
	if sb.file != nil {
		_ = sb.file.Close()
	}
	*sb = spooledBody{mem: sb.mem[:0], scratch: sb.scratch}
	if cap(sb.mem) > 4<<20 {
		sb.mem = nil // a large memory bound: don't keep its buffers past the response
	}
	spooledPool.Put(sb)
	return nil
}

// spool buffers the body of resp, which s is about to stream, and sets the buffer as the body.
func (t *Target) spool(s *bodyStream, resp *fasthttp.Response, cl int, x *RoundTrip) error {
	sb := spooledPool.Get().(*spooledBody)
	sb.live = true
	if err := sb.fill(s, x.buffering); err != nil {
		_ = s.Close() // closes the connection: the body did not end cleanly
		_ = sb.Close()
		kind := KindRead
		switch {
		case errors.Is(err, errTooLarge):
			kind = KindTooLarge
		case isTimeout(err):
			kind = KindTimeout
		}
		if kind.countsAsFailure() {
			t.recordFailure(x.Now, x.policy)
		}
		return &Error{Kind: kind, Addr: t.Addr, Err: err}
	}
	if sb.file != nil {
		t.spilled.Add(1)
	}
	if s.done {
		t.buffered.Add(1)
		_ = s.Close() // the connection goes back to the pool now
	} else {
		sb.tail = s // too large to buffer whole: the rest streams as without buffering
	}
	// The client gets the upstream's framing: a chunked body stays chunked (and so, for
	// instance, is not compressed), buffered or not.
	resp.SetBodyStream(sb, cl)
	t.recordSuccess()
	return nil
}

// detachSpooled moves a spooled body to a new owner, as Detach does for a body stream.
func detachSpooled(sb *spooledBody) io.ReadCloser {
	if !sb.live {
		return nil
	}
	d := spooledPool.Get().(*spooledBody)
	*d = *sb
	*sb = spooledBody{}
	return d
}
