// Package accesslog writes one JSON line per request: the fields of nginx's log_format with its
// rt/urt timings, in the shape log/slog's JSON handler gave them. When access logging is off the
// gateway holds no Logger at all, so the request path pays one nil check.
//
// The request path neither allocates nor locks. A line is appended into a pooled scratch buffer,
// then copied into one of a few fixed buffers at an offset reserved with a compare-and-swap; a
// writer goroutine owned by the Logger writes each buffer with one system call when it fills, at
// every flush interval, and at Close. When every buffer is waiting on the writer, a line is
// dropped and counted rather than holding the request (see Dropped).
package accesslog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one request as logged. The caller fills it and passes it to Log; Log copies what it
// needs, so the Entry and the byte slices in it may be reused right after.
type Entry struct {
	RequestID    []byte
	ClientIP     netip.Addr
	Method       []byte
	Path         []byte
	Query        []byte
	Route        string
	Upstream     string
	Target       string
	Status       int
	BytesIn      int64
	BytesOut     int64
	Duration     time.Duration // total time in the gateway (nginx $request_time)
	UpstreamTime time.Duration // time waiting on upstreams (nginx $upstream_response_time)
	Attempts     int
	UserAgent    []byte
	Referer      []byte
	// Protocol is the HTTP version of the client's request: "HTTP/1.1" or "HTTP/2".
	Protocol string
	Err      error
	// TraceID and SpanID are the request's trace and the gateway's span in it, written when
	// Traced (server.tracing is on), sampled or not.
	TraceID [16]byte
	SpanID  [8]byte
	Traced  bool

	// GRPCStatus is the gRPC status the gateway answered a gRPC call with itself (Status is
	// 200 then), written as grpc_status when HasGRPCStatus.
	GRPCStatus    int
	HasGRPCStatus bool
}

// Defaults of Options, the same as access_log.buffer and access_log.flush in routes.yaml.
const (
	DefaultBuffer = 64 << 10
	DefaultFlush  = time.Second
	// MinBuffer keeps a line of the longest request head the server accepts by default within
	// one buffer; a line longer than a buffer is dropped and counted.
	MinBuffer = 4 << 10
	// buffers is how many buffers a Logger has: one filling, the rest queued for the writer.
	buffers = 4
)

// Options tune a Logger's buffering. Zero values take the defaults.
type Options struct {
	// Buffer is the size of each of the Logger's four buffers (nginx access_log buffer=).
	Buffer int
	// Flush bounds how long a line waits in a buffer that is not full (nginx flush=).
	Flush time.Duration
	// Warn, when set, receives a warning after a flush interval in which lines were dropped or
	// a write failed.
	Warn *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	o.Buffer = min(max(o.Buffer, MinBuffer), 1<<31) // offsets live in 32 bits of the state word
	if o.Flush <= 0 {
		o.Flush = DefaultFlush
	}
	return o
}

// The state word packs the buffer being filled (high 32 bits) and the bytes reserved in it (low
// 32 bits). One compare-and-swap reserves room for a line; rotating to another buffer swaps the
// whole word, so a reservation can only land in the buffer the word names at that instant.
const (
	offsetBits = 32
	offsetMask = 1<<offsetBits - 1
	closedSlab = 0xff // in the index bits once the Logger is closed: lines are dropped
)

// Logger writes access log lines. Safe for concurrent use; Log never blocks on the output.
type Logger struct {
	// Output is "stdout", "stderr", a file path, or "writer" for New.
	Output string
	opts   Options
	w      io.Writer
	file   *os.File // nil for stdout and stderr

	state atomic.Uint64
	slabs [buffers][]byte
	// inflight counts, per buffer, the lines being copied in; the writer waits for zero after
	// rotating a buffer out. Padded so writers on different buffers don't share a cache line.
	inflight [buffers]struct {
		n atomic.Int64
		_ [56]byte
	}
	free chan uint8  // buffers ready to fill; cap buffers, so sending never blocks
	full chan uint64 // state words of rotated-out buffers, for the writer; cap buffers

	dropped   atomic.Uint64
	writeErr  atomic.Pointer[error]
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open starts a logger writing to "stdout", "stderr" or a file path (appended to, created 0644).
func Open(output string, o Options) (*Logger, error) {
	var w io.Writer
	var file *os.File
	switch output {
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open access log: %w", err)
		}
		w, file = f, f
	}
	return newLogger(output, w, file, o), nil
}

// New starts a logger writing to w. Writes to w come from one goroutine at a time.
func New(w io.Writer, o Options) *Logger { return newLogger("writer", w, nil, o) }

func newLogger(output string, w io.Writer, file *os.File, o Options) *Logger {
	o = o.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Logger{
		Output: output, opts: o, w: w, file: file,
		free: make(chan uint8, buffers), full: make(chan uint64, buffers),
		cancel: cancel, done: make(chan struct{}),
	}
	for i := range l.slabs {
		l.slabs[i] = make([]byte, o.Buffer)
		if i > 0 {
			l.free <- uint8(i)
		}
	}
	go l.run(ctx)
	return l
}

// Matches reports whether the logger writes to output with the buffering o asks for, so a
// reload that changes neither keeps it.
func (l *Logger) Matches(output string, o Options) bool {
	o = o.withDefaults()
	return l.Output == output && l.opts.Buffer == o.Buffer && l.opts.Flush == o.Flush
}

// Dropped is the number of lines not written because every buffer was waiting on a slow output,
// the line was longer than a buffer, or the Logger was closed.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

type scratch struct{ b []byte }

// scratchPool holds line buffers; sync.Pool keeps one per P, so Get and Put take no lock.
var scratchPool = sync.Pool{New: func() any { return &scratch{b: make([]byte, 0, 1024)} }}

// maxScratch keeps a pathological line's buffer out of the pool.
const maxScratch = 64 << 10

// Log writes one line.
func (l *Logger) Log(e *Entry) {
	sc := scratchPool.Get().(*scratch)
	sc.b = appendLine(sc.b[:0], e, time.Now())
	l.write(sc.b)
	if cap(sc.b) <= maxScratch {
		scratchPool.Put(sc)
	}
}

// write copies line into the buffer being filled, rotating to a free buffer when it does not
// fit. Lock-free: a reservation is one compare-and-swap, a rotation one non-blocking receive
// and one send on channels that always have room.
func (l *Logger) write(line []byte) {
	n := uint64(len(line))
	if n > uint64(l.opts.Buffer) {
		l.dropped.Add(1)
		return
	}
	for {
		s := l.state.Load()
		i := s >> offsetBits
		if i == closedSlab {
			l.dropped.Add(1)
			return
		}
		off := s & offsetMask
		if off+n > uint64(l.opts.Buffer) {
			if !l.rotate(s) {
				l.dropped.Add(1)
				return
			}
			continue
		}
		// Count ourselves in before reserving: once the reservation succeeds, a writer that
		// rotates this buffer out afterwards sees the count and waits for the copy.
		in := &l.inflight[i].n
		in.Add(1)
		if l.state.CompareAndSwap(s, s+n) {
			copy(l.slabs[i][off:], line)
			in.Add(-1)
			return
		}
		in.Add(-1)
	}
}

// rotate replaces the buffer named by s with a free one and queues s for the writer. It reports
// false when no buffer is free (all wait on the writer); true when the caller should retry,
// whether this call rotated or another writer changed the state first.
func (l *Logger) rotate(s uint64) bool {
	select {
	case j := <-l.free:
		if l.state.CompareAndSwap(s, uint64(j)<<offsetBits) {
			l.full <- s
		} else {
			l.free <- j
		}
		return true
	default:
		return false
	}
}

// run is the writer: it owns every write to the output and stops when Close cancels ctx.
func (l *Logger) run(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(l.opts.Flush)
	defer tick.Stop()
	var reportedDrops uint64
	for {
		select {
		case s := <-l.full:
			l.writeSlab(s)
		case <-tick.C:
			l.flushCurrent()
			reportedDrops = l.warn(reportedDrops)
		case <-ctx.Done():
			l.drain()
			return
		}
	}
}

// flushCurrent rotates out and writes a buffer that holds lines but is not full, so a quiet
// gateway's lines appear within one flush interval.
func (l *Logger) flushCurrent() {
	for {
		s := l.state.Load()
		if s&offsetMask == 0 || s>>offsetBits == closedSlab {
			return
		}
		select {
		case j := <-l.free:
			if l.state.CompareAndSwap(s, uint64(j)<<offsetBits) {
				l.writeSlab(s)
				return
			}
			l.free <- j // a line landed meanwhile; look again
		default:
			return // every other buffer is queued: they and this one go out before long
		}
	}
}

// writeSlab waits for the copies into the rotated-out buffer s names, writes it and frees it.
func (l *Logger) writeSlab(s uint64) {
	i, off := s>>offsetBits, s&offsetMask
	for l.inflight[i].n.Load() != 0 {
		runtime.Gosched() // a copy of a few hundred bytes is under way
	}
	if off > 0 {
		if _, err := l.w.Write(l.slabs[i][:off]); err != nil {
			l.writeErr.Store(&err)
		}
	}
	l.free <- uint8(i)
}

// drain closes the state to new lines and writes every buffer still holding some. A writer may
// be between taking a free buffer and installing or returning it, or between rotating a buffer
// out and queueing it; waiting until every buffer has come back covers both.
func (l *Logger) drain() {
	last := l.state.Swap(closedSlab << offsetBits)
	l.writeSlab(last)
	for seen := 0; seen < buffers; { // each buffer reaches free exactly once, written

		select {
		case s := <-l.full:
			l.writeSlab(s)
		case <-l.free:
			seen++
		}
	}
}

func (l *Logger) warn(reported uint64) uint64 {
	if l.opts.Warn == nil {
		return reported
	}
	if err := l.writeErr.Swap(nil); err != nil {
		l.opts.Warn.Warn("access log write failed", "output", l.Output, "error", *err)
	}
	if d := l.dropped.Load(); d != reported {
		l.opts.Warn.Warn("access log lines dropped: the output is slower than the requests",
			"output", l.Output, "dropped", d-reported, "total", d)
		return d
	}
	return reported
}

// Close writes every buffered line, stops the writer and closes the file it opened. Lines
// logged after Close are dropped and counted.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		<-l.done
		if l.file != nil {
			l.closeErr = l.file.Close()
		}
	})
	return l.closeErr
}
