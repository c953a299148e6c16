// Package park takes idle keep-alive connections out of fasthttp's serving and watches them
// with one goroutine for the whole gateway, so that an idle connection holds no goroutine, no
// read buffer and no RequestCtx (server.idle_park_after).
//
// fasthttp serves each connection with its own goroutine, which keeps its stack (8 KiB once a
// request went through the proxy) and, because request bodies are streamed, its read buffer
// (sized max_header_bytes) for as long as the connection stays open, idle or not. Parking
// ends that serving at a request boundary without closing the socket, within fasthttp's public
// API:
//
//   - fasthttp reports each connection's state through Server.ConnState; only a connection in
//     StateIdle (a keep-alive connection waiting for its next request, nothing buffered) may
//     park, so a request body, a 100-continue, a tunnel (StateHijacked) never does. HTTP/2
//     connections never reach fasthttp's loop.
//   - At that boundary fasthttp sets the idle deadline; Conn shortens it to the park delay.
//     When the delay passes with nothing read, Read returns end-of-file, fasthttp's loop ends,
//     returns its goroutine, buffers and RequestCtx to its pools and calls Close, and Close
//     parks the connection instead of closing it.
//   - The Parker adds the socket to an epoll set of its own (level-triggered, one-shot) and
//     one goroutine waits on it for every parked connection. Readable: the connection leaves
//     the set and is handed back to fasthttp through its listener's Accept, as a connection
//     fasthttp serves afresh (its first byte is already there). The peer gone, or the rest of
//     the idle timeout passed: it is closed.
//
// Conn sits below the request head check (protocol.Conn), which a re-delivered connection
// gets afresh (right at a request boundary), and above TLS and PROXY protocol: a parked TLS
// connection keeps crypto/tls's state and record buffers.
//
// The connection caps see a parked connection as open (it is never closed and never
// re-admitted), so it is counted once.
package park

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a parked connection was closed, for metrics.
type CloseReason uint8

const (
	ClosedIdleTimeout CloseReason = iota // the rest of the idle timeout passed with nothing read
	ClosedByClient                       // the client closed or reset the connection
	ClosedAtShutdown                     // the listener closed (shutdown)
	numCloseReasons
)

// CloseReasonNames are the metric label values of the CloseReasons.
var CloseReasonNames = [numCloseReasons]string{"idle_timeout", "client_closed", "shutdown"}

// ErrUnsupported: parking needs an epoll set (Linux).
var ErrUnsupported = errors.New("parking idle connections needs Linux (epoll)")

// Memory release. Parked connections give their goroutine stack and buffers back to the Go
// runtime, which returns memory to the operating system only after garbage collections; an
// idle gateway allocates nothing and so collects only every two minutes (the forced GC), and
// fasthttp's pools keep what parked connections gave back until two collections passed. After
// a wave of parks has settled, the Parker therefore collects twice and returns the freed pages
// at once (runtime/debug.FreeOSMemory). A gateway that keeps parking never settles and is
// collected by its own allocation anyway.
const (
	releaseMinParks = 256              // parks since the last release that make one worthwhile
	releaseEvery    = 10 * time.Second // at most one release per this long
)

// Crowding. A connection waiting on fasthttp's goroutine for its next request holds that
// goroutine's stack, its read buffer and RequestCtx (about 18 KiB); parked it holds about 3.
// The park delay keeps a client that pauses between requests from being parked and woken each
// time, but when thousands of connections go quiet together (clients that connect, ask once
// and idle; a reconnect wave after a deploy) it also holds every one of them on a goroutine for
// the whole delay: 9 800 such connections took 211 MiB at their peak with a 5 s delay. Beyond
// DefaultCrowd connections served at once by one listener, a connection that reaches a request
// boundary parks after CrowdedAfter instead, once (Listener.delay), so the wave holds goroutines
// and buffers for a tenth of a second each. The goroutine records the runtime keeps for ever,
// and the span and GC metadata sized by the peak, shrink with it. A busy connection is not
// affected: its next request comes well within CrowdedAfter.
const (
	DefaultCrowd = 1024
	CrowdedAfter = 100 * time.Millisecond
)

// Parker watches every parked connection of the gateway: one epoll set, one goroutine. Its
// methods are safe for concurrent use.
type Parker struct {
	poll   *poller
	logger *slog.Logger
	quiet  time.Duration // no park for this long: the wave has settled (release)

	mu      sync.Mutex
	byFD    map[int32]*Conn // parked connections by socket descriptor
	byTime  deadlines       // the same, earliest idle deadline first
	seq     uint32          // tells a parked connection from an earlier one on a reused descriptor
	stopped bool            // the watcher has stopped: nothing parks any more
	// Memory release bookkeeping.
	parksSinceRelease int
	lastPark          time.Time
	lastRelease       time.Time

	releasing atomic.Bool
	releases  atomic.Uint64
	work      sync.WaitGroup // TLS closes and memory releases started by the watcher (only it adds)
	done      chan struct{}  // closed when the watcher has stopped and cleaned up
	stopWatch func() bool
}

// New makes the epoll set and starts the watcher; it stops when ctx ends or at Close.
// workerIdle is how long fasthttp keeps a goroutine whose connection parked before it exits
// (Server.MaxIdleWorkerDuration): memory is released only after those goroutines are gone.
func New(ctx context.Context, workerIdle time.Duration, logger *slog.Logger) (*Parker, error) {
	if logger == nil {
		logger = slog.Default()
	}
	poll, err := newPoller()
	if err != nil {
		return nil, fmt.Errorf("park: %w", err)
	}
	p := &Parker{poll: poll, logger: logger, byFD: map[int32]*Conn{}, done: make(chan struct{}),
		quiet: max(3*workerIdle, time.Second)}
	p.stopWatch = context.AfterFunc(ctx, func() { p.stop() })
	go p.watch()
	return p, nil
}

// Close closes every parked connection and stops the watcher. It waits for closes and memory
// releases in progress.
func (p *Parker) Close() error {
	p.stopWatch()
	p.stop()
	<-p.done
	return nil
}

// Releases is how many times the memory parked connections gave back was returned to the OS.
func (p *Parker) Releases() uint64 { return p.releases.Load() }

// stop tells the watcher to close everything and end. Only the first call writes to the pipe,
// under p.mu, so no write can reach a descriptor the watcher closed at its end.
func (p *Parker) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.stopped = true
		p.poll.wake()
	}
}

// park adds c to the set. It fails when the watcher has stopped or c's listener closed; the
// caller then closes c.
func (p *Parker) park(c *Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || c.l.shut {
		return errors.New("park: listener closed")
	}
	p.seq++
	c.key = p.seq
	if err := p.poll.add(c.fd, c.key); err != nil {
		return err
	}
	c.deadline = c.idleDeadline
	heap.Push(&p.byTime, c)
	p.byFD[c.fd] = c
	c.l.parked.Add(1)
	c.l.parks.Add(1)
	now := time.Now()
	p.parksSinceRelease++
	p.lastPark = now
	if c.index == 0 || p.parksSinceRelease == releaseMinParks {
		// The watcher's wait was planned without this deadline (or without a release due).
		p.poll.wake()
	}
	return nil
}

// unpark removes c from the set; p.mu is held. It still counts as parked until it is handed
// back (Listener.deliver) or closed (closeParked), which count why first.
func (p *Parker) unpark(c *Conn) {
	p.poll.remove(c.fd)
	delete(p.byFD, c.fd)
	heap.Remove(&p.byTime, c.index)
	c.index = -1
}

// closeAll closes the parked connections of l (shutdown, or the listener closing): from now on
// l's connections do not park.
func (p *Parker) closeAll(l *Listener) {
	p.mu.Lock()
	l.shut = true
	var out []*Conn
	for _, c := range p.byFD {
		if c.l == l {
			out = append(out, c)
		}
	}
	for _, c := range out {
		p.unpark(c)
	}
	p.mu.Unlock()
	var closing sync.WaitGroup
	for _, c := range out {
		p.closeParked(c, ClosedAtShutdown, &closing)
	}
	closing.Wait()
}

// closeParked closes a connection that left the set, counting why before it stops counting as
// parked.
func (p *Parker) closeParked(c *Conn, why CloseReason, closing *sync.WaitGroup) {
	c.l.closes[why].Add(1)
	c.l.parked.Add(-1)
	closeConn(c, closing)
}

// closeConn closes c for good; closing tracks what it starts. Closing a TLS connection sends
// close_notify, which can wait (up to crypto/tls's 5 s) for a client that stopped reading: that
// runs on its own goroutine so the watcher never stalls.
func closeConn(c *Conn, closing *sync.WaitGroup) {
	c.state.Store(connClosed)
	if c.tls {
		closing.Go(func() { _ = c.Conn.Close() })
		return
	}
	_ = c.Conn.Close()
}

// watch is the watcher: it hands readable connections back, closes those whose peer left or
// whose idle timeout passed, and releases memory after waves of parks.
func (p *Parker) watch() {
	defer close(p.done)
	events := make([]event, 256)
	var ready, gone, expired []*Conn
	for {
		wait := p.plan(time.Now())
		n, err := p.poll.wait(events, wait)
		if err != nil {
			p.logger.Error("parked connections: epoll wait failed; closing them", "error", err.Error())
			p.stop()
		}
		ready, gone, expired = ready[:0], gone[:0], expired[:0]
		p.mu.Lock()
		if p.stopped {
			for _, c := range p.byFD {
				expired = append(expired, c)
			}
			for _, c := range expired {
				p.unpark(c)
			}
			p.mu.Unlock()
			for _, c := range expired {
				p.closeParked(c, ClosedAtShutdown, &p.work)
			}
			p.work.Wait()
			p.poll.close()
			return
		}
		for _, ev := range events[:n] {
			if ev.wakeup {
				continue
			}
			c := p.byFD[ev.fd]
			if c == nil || c.key != ev.key {
				continue // closed or woken already; the descriptor may be another connection's now
			}
			p.unpark(c)
			if ev.hangup || (ev.peerClosed && !p.poll.pending(c.fd)) {
				gone = append(gone, c)
			} else {
				ready = append(ready, c)
			}
		}
		now := time.Now()
		for len(p.byTime) > 0 && !p.byTime[0].deadline.After(now) {
			c := p.byTime[0]
			p.unpark(c)
			expired = append(expired, c)
		}
		release := p.releaseDue(now)
		p.mu.Unlock()
		for _, c := range ready {
			c.l.deliver(c)
		}
		for _, c := range gone {
			p.closeParked(c, ClosedByClient, &p.work)
		}
		for _, c := range expired {
			p.closeParked(c, ClosedIdleTimeout, &p.work)
		}
		clear(ready)
		clear(gone)
		clear(expired)
		if release {
			p.release()
		}
	}
}

// plan is how long the watcher may wait: until the earliest idle deadline or the release due,
// or indefinitely (-1).
func (p *Parker) plan(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	wait := time.Duration(-1)
	if len(p.byTime) > 0 {
		wait = max(p.byTime[0].deadline.Sub(now), 0)
	}
	if p.parksSinceRelease >= releaseMinParks && !p.releasing.Load() {
		due := max(p.lastPark.Add(p.quiet).Sub(now), p.lastRelease.Add(releaseEvery).Sub(now))
		if wait < 0 || due < wait {
			wait = max(due, 0)
		}
	}
	return wait
}

// releaseDue reports whether a wave of parks has settled (p.mu held) and starts counting anew.
func (p *Parker) releaseDue(now time.Time) bool {
	if p.parksSinceRelease < releaseMinParks || now.Sub(p.lastPark) < p.quiet || now.Sub(p.lastRelease) < releaseEvery {
		return false
	}
	if !p.releasing.CompareAndSwap(false, true) {
		return false
	}
	p.parksSinceRelease = 0
	p.lastRelease = now
	return true
}

// release collects twice (the first moves fasthttp's pooled buffers to the pools' victim
// caches, the second frees them) and returns the free pages to the OS, off the watcher.
func (p *Parker) release() {
	p.work.Go(func() {
		defer p.releasing.Store(false)
		runtime.GC()
		debug.FreeOSMemory()
		p.releases.Add(1)
	})
}

// deadlines is a heap of parked connections by idle deadline.
type deadlines []*Conn

func (h deadlines) Len() int           { return len(h) }
func (h deadlines) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlines) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *deadlines) Push(x any) {
	c := x.(*Conn)
	c.index = len(*h)
	*h = append(*h, c)
}
func (h *deadlines) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

var _ heap.Interface = (*deadlines)(nil)
