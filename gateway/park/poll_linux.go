//go:build linux

package park

import (
	"errors"
	"syscall"
	"time"
)

// poller is the Parker's epoll set and the pipe that interrupts its wait. Go's own netpoller
// keeps the same sockets registered in its epoll set; nothing waits on them there while they
// are parked, so the two never compete for an event.
type poller struct {
	epfd int
	pipe [2]int // read end in the set; a byte written to the other end ends a wait
}

// event is one readiness report of the set.
type event struct {
	fd         int32
	key        uint32 // the connection's park sequence, against descriptor reuse
	wakeup     bool   // the pipe: re-plan or stop
	hangup     bool   // EPOLLHUP or EPOLLERR: the connection is unusable
	peerClosed bool   // EPOLLRDHUP: the client shut down its side (maybe after sending)
}

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: epfd}
	if err := syscall.Pipe2(p.pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.pipe[0]), Pad: -1}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.pipe[0], &ev); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// add watches fd for input, a peer's shutdown or an error, once: level-triggered with
// EPOLLONESHOT, so a readable socket is reported once and then stays quiet until removed.
func (p *poller) add(fd int32, key uint32) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: fd, Pad: int32(key)}
	return syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
}

// remove takes fd out of the set (before it is handed back or closed).
func (p *poller) remove(fd int32) {
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
}

// wait blocks until events or the timeout (negative: none). Interrupted waits return no
// events.
func (p *poller) wait(out []event, timeout time.Duration) (int, error) {
	var raw [256]syscall.EpollEvent
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond) // never wake before a deadline
	}
	n, err := syscall.EpollWait(p.epfd, raw[:min(len(out), len(raw))], ms)
	if errors.Is(err, syscall.EINTR) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for i, ev := range raw[:n] {
		if ev.Fd == int32(p.pipe[0]) && ev.Pad == -1 {
			p.drain()
			out[i] = event{wakeup: true}
			continue
		}
		out[i] = event{fd: ev.Fd, key: uint32(ev.Pad),
			hangup:     ev.Events&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0,
			peerClosed: ev.Events&syscall.EPOLLRDHUP != 0}
	}
	return n, nil
}

// pending reports whether fd has bytes to read (a client that sent a request and then shut down
// its side is still served).
func (p *poller) pending(fd int32) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == nil && n > 0
}

// wake ends the current or next wait.
func (p *poller) wake() {
	_, _ = syscall.Write(p.pipe[1], []byte{1})
}

func (p *poller) drain() {
	var b [64]byte
	for {
		if n, err := syscall.Read(p.pipe[0], b[:]); n <= 0 || err != nil {
			return
		}
	}
}

func (p *poller) close() {
	_ = syscall.Close(p.pipe[0])
	_ = syscall.Close(p.pipe[1])
	_ = syscall.Close(p.epfd)
}
