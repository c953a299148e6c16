package websocket

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// Poller waits, for every tunnel of the gateway, on the sockets of the directions that have
// nothing to relay: one epoll set and one goroutine. A direction whose source ran dry arms its
// socket in the set (level-triggered, one-shot) and its goroutine ends; when the socket becomes
// readable the Poller starts a goroutine for that direction, which relays what came and arms
// again. So an idle tunnel holds no goroutine and no buffer, whether its client came over plain
// TCP or TLS (a *tls.Conn's socket is waited on, and then read through crypto/tls).
//
// The set is itself waited on through Go's netpoller (an epoll descriptor is pollable), so the
// Poller's goroutine parks like any read and holds no thread. Go's netpoller keeps the same
// sockets registered in its own set; an armed direction has no goroutine reading its socket, so
// the two never compete for an event.
//
// Its methods are safe for concurrent use. It stops when the context given to NewPoller ends;
// the directions armed then carry on as ordinary pumps, each on a goroutine of its own.
type Poller struct {
	file   *os.File // the epoll set
	raw    syscall.RawConn
	epfd   int
	waitFn func(uintptr) bool
	events [64]syscall.EpollEvent
	ready  int
	woken  []*pump
	done   chan struct{}

	mu      sync.Mutex
	armed   map[uint64]*pump // directions in the set, by key; owned by nobody until woken
	nextKey uint64
	stopped bool
}

// NewPoller makes the epoll set and starts its goroutine, which stops when ctx ends.
func NewPoller(ctx context.Context) (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("websocket: epoll set for idle tunnels: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("websocket: epoll set for idle tunnels: %w", err)
	}
	pl := &Poller{file: os.NewFile(uintptr(epfd), "websocket tunnels"), epfd: epfd, armed: map[uint64]*pump{}, done: make(chan struct{})}
	// A file the netpoller could not take reports ErrNoDeadline; its reads would block a thread.
	if err := pl.file.SetReadDeadline(time.Time{}); err != nil {
		_ = pl.file.Close()
		return nil, errors.New("websocket: epoll set for idle tunnels is not pollable here")
	}
	if pl.raw, err = pl.file.SyscallConn(); err != nil {
		_ = pl.file.Close()
		return nil, fmt.Errorf("websocket: epoll set for idle tunnels: %w", err)
	}
	pl.waitFn = pl.poll
	stopWait := context.AfterFunc(ctx, func() { _ = pl.file.SetReadDeadline(time.Unix(1, 0)) })
	go func() {
		defer stopWait()
		pl.run()
	}()
	return pl, nil
}

// Done is closed once the Poller has stopped and handed every armed direction to a pump.
func (pl *Poller) Done() <-chan struct{} { return pl.done }

// Armed is how many tunnel directions wait in the set.
func (pl *Poller) Armed() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.armed)
}

// poll is the callback of the set's RawConn.Read: the ready events without waiting, or "not
// yet", so the netpoller waits for the set.
func (pl *Poller) poll(fd uintptr) bool {
	n, err := syscall.EpollWait(int(fd), pl.events[:], 0)
	if err != nil || n <= 0 {
		return false
	}
	pl.ready = n
	return true
}

func (pl *Poller) run() {
	defer close(pl.done)
	for {
		pl.ready = 0
		if err := pl.raw.Read(pl.waitFn); err != nil {
			break // the context ended (its deadline), or the set broke
		}
		pl.mu.Lock()
		for _, ev := range pl.events[:pl.ready] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if p := pl.armed[key]; p != nil {
				delete(pl.armed, key)
				pl.woken = append(pl.woken, p)
			}
		}
		pl.mu.Unlock()
		for i, p := range pl.woken {
			go p.runPolled(true)
			pl.woken[i] = nil
		}
		pl.woken = pl.woken[:0]
	}
	pl.mu.Lock()
	pl.stopped = true
	for key, p := range pl.armed {
		delete(pl.armed, key)
		go p.runPolled(false) // cannot arm again: a pump for the rest of the tunnel
	}
	pl.mu.Unlock()
	_ = pl.file.Close()
}

// arm puts p's socket in the set; from then on p belongs to whoever takes it out (the Poller
// when the socket is readable, claim, or the stop). False when it cannot wait there (the
// Poller stopped, or the kernel refused): p's goroutine then stays its pump.
func (pl *Poller) arm(p *pump) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.stopped {
		return false
	}
	if p.key == 0 {
		cerr := p.wait.Control(func(fd uintptr) { p.fd = int(fd) })
		if cerr != nil {
			return false
		}
		pl.nextKey++
		p.key = pl.nextKey
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(p.key)), Pad: int32(uint32(p.key >> 32))}
	op := syscall.EPOLL_CTL_MOD
	if !p.registered {
		op = syscall.EPOLL_CTL_ADD
	}
	if err := syscall.EpollCtl(pl.epfd, op, p.fd, &ev); err != nil {
		return false
	}
	p.registered = true
	pl.armed[p.key] = p
	return true
}

// claim takes p out of the set if it is armed there: the caller then owns it.
func (pl *Poller) claim(p *pump) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.armed[p.key] != p {
		return false
	}
	delete(pl.armed, p.key)
	return true
}

// forget takes p's socket out of the set for good (its direction ended; the socket closes
// soon after).
func (pl *Poller) forget(p *pump) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if p.registered && !pl.stopped {
		_ = syscall.EpollCtl(pl.epfd, syscall.EPOLL_CTL_DEL, p.fd, nil)
	}
	p.registered = false
}
