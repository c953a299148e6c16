package websocket

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
)

// A tunnel between two sockets starts with one goroutine, its watcher, instead of a pump per
// direction: the watcher waits on an epoll set of its own holding both sockets (its descriptor
// is pollable, so the wait is Go's netpoller's like any read), and relays what either side sent
// with non-blocking reads and writes. An idle tunnel then costs one goroutine. A wake-up costs an
// epoll_wait more than a pump's, so a busy tunnel hands over to the two pumps for good: when a
// write would block (the reader is slow: a pump may wait in its write without holding up the
// other direction), when one wake-up reads more than a few buffers, or after busyWakeups
// wake-ups within a second.
const (
	busyWakeups = 32
	busyReads   = 4
)

// watcher is the state of a tunnel's watch; it is dropped at the hand-over.
type watcher struct {
	file   *os.File // the epoll set
	raw    syscall.RawConn
	waitFn func(uintptr) bool
	events [2]syscall.EpollEvent
	ready  int

	windowStart int64 // unix nanoseconds
	wakeups     int
}

// errWatchUnsupported: the epoll set cannot be waited on through the netpoller here.
var errWatchUnsupported = errors.New("websocket: epoll set not pollable")

// newWatcher makes the epoll set of both sockets.
func (t *Tunnel) newWatcher() (*watcher, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, err
	}
	w := &watcher{file: os.NewFile(uintptr(epfd), "websocket tunnel")}
	for i, p := range [2]*pump{&t.up, &t.down} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(i)}
		cerr := p.raw.Control(func(fd uintptr) { err = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev) })
		if err == nil {
			err = cerr
		}
		if err != nil {
			_ = w.file.Close()
			return nil, err
		}
	}
	// A file the netpoller could not take reports ErrNoDeadline; its reads would block a thread.
	if err := w.file.SetReadDeadline(time.Time{}); err != nil {
		_ = w.file.Close()
		return nil, errWatchUnsupported
	}
	if w.raw, err = w.file.SyscallConn(); err != nil {
		_ = w.file.Close()
		return nil, err
	}
	w.waitFn = w.poll
	return w, nil
}

// poll is the callback of the epoll set's RawConn.Read: it takes the ready events without
// waiting, and reports "not yet" when there are none, so the netpoller waits for the set.
func (w *watcher) poll(fd uintptr) bool {
	n, err := syscall.EpollWait(int(fd), w.events[:], 0)
	if err != nil || n <= 0 {
		return false
	}
	w.ready = n
	return true
}

// watch relays with one goroutine until the tunnel ends or hands over to the pumps.
func (t *Tunnel) watch(w *watcher) {
	defer func() { _ = w.file.Close() }()
	w.windowStart = time.Now().UnixNano()
	for {
		if t.closeCode.Load() != 0 {
			for _, p := range [2]*pump{&t.up, &t.down} {
				if !p.ended {
					p.sendClose()
					p.ended = true
					t.finish()
				}
			}
			return
		}
		w.ready = 0
		if err := w.raw.Read(w.waitFn); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && t.closeCode.Load() != 0 {
				continue // Shutdown woke the wait
			}
			t.handOver()
			return
		}
		reads := 0
		for _, ev := range w.events[:w.ready] {
			p := &t.up
			if ev.Fd == 1 {
				p = &t.down
			}
			if p.ended {
				continue
			}
			n, ok := p.burst()
			reads += n
			if !ok {
				p.ended = true
				_ = p.raw.Control(func(fd uintptr) {
					_ = syscall.EpollCtl(int(w.file.Fd()), syscall.EPOLL_CTL_DEL, int(fd), nil)
				})
				if t.finish() {
					return
				}
			}
			if p.unsent != nil {
				t.handOver()
				return
			}
		}
		if t.closeCode.Load() != 0 {
			continue
		}
		now := time.Now().UnixNano()
		if now-w.windowStart > int64(time.Second) {
			w.windowStart, w.wakeups = now, 0
		}
		w.wakeups++
		if reads > busyReads || w.wakeups > busyWakeups {
			t.handOver()
			return
		}
	}
}

// handOver ends the watch: the pumps of the directions still open carry on.
func (t *Tunnel) handOver() {
	t.watching.Store(nil)
	for _, p := range [2]*pump{&t.up, &t.down} {
		if !p.ended {
			go p.run()
		}
	}
}

// burst reads src until it has nothing more and relays what it read without blocking. It
// returns the reads that brought bytes, and false when the direction ended (the source closed or
// failed, or the destination failed). A write that would block leaves p.unsent set and the
// buffer held: the pump finishes that write.
func (p *pump) burst() (int, bool) {
	reads := 0
	p.take()
	p.nonBlocking = true
	defer func() {
		p.nonBlocking = false
		if p.unsent == nil {
			p.giveBack()
		}
	}()
	for p.unsent == nil && p.t.closeCode.Load() == 0 {
		p.n, p.rerr = 0, nil
		p.again = false
		if err := p.raw.Read(p.readNowFn); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && p.t.closeCode.Load() != 0 {
				return reads, true
			}
			p.endWith(err)
			return reads, false
		}
		switch {
		case p.again:
			return reads, true
		case p.n > 0:
			reads++
			p.t.lastActivity.Store(time.Now().UnixNano())
			if !p.relay(p.buf[:p.have+p.n]) {
				return reads, false
			}
		case p.rerr != nil:
			p.endWith(p.rerr)
			return reads, false
		default:
			p.endWith(io.EOF)
			return reads, false
		}
	}
	return reads, true
}

// bindWatch binds the callbacks of the watcher's reads and writes once: they allocate nothing.
func (p *pump) bindWatch() { p.readNowFn, p.writeFn = p.readNow, p.writeRaw }

// readNow is the callback of src's RawConn.Read in a burst: one non-blocking read, never a wait.
func (p *pump) readNow(fd uintptr) bool {
	copy(p.buf[:], p.head[:p.have])
	for {
		n, err := syscall.Read(int(fd), p.buf[p.have:])
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			p.again = true
			return true
		}
		p.n, p.rerr = max(n, 0), err
		return true
	}
}

// writeNow writes b to dst's socket without blocking. It returns how much it wrote and whether
// the socket took less because it was full.
func (p *pump) writeNow(b []byte) (int, bool, error) {
	p.out, p.wrote, p.full, p.werr = b, 0, false, nil
	err := p.dstRaw.Write(p.writeFn)
	p.out = nil
	if err == nil {
		err = p.werr
	}
	return p.wrote, p.full, err
}

func (p *pump) writeRaw(fd uintptr) bool {
	for p.wrote < len(p.out) {
		n, err := syscall.Write(int(fd), p.out[p.wrote:])
		switch err {
		case nil:
			p.wrote += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			p.full = true
			return true
		default:
			p.werr = err
			return true
		}
	}
	return true
}
