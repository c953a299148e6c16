package park

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
)

// Listener is one listener's side of parking: it wraps the listener fasthttp serves (below the
// request head check) so that every connection is a *Conn, and its Accept returns, besides new
// connections, parked ones that became readable. Counters are safe to read at any time.
type Listener struct {
	p     *Parker
	after time.Duration // park delay: idle this long at a request boundary

	// Crowding (see CrowdedAfter): served counts the connections its fasthttp server serves
	// now; nil leaves the delay as it is. Set before serving.
	served func() int32
	crowd  int32

	inner     net.Listener
	accepted  chan accepted
	wake      chan struct{} // a parked connection was queued in woken
	done      chan struct{} // closed by Close
	startOnce sync.Once
	closeOnce sync.Once

	mu     sync.Mutex
	woken  []*Conn // readable parked connections for Accept, oldest first from head
	head   int
	closed bool

	shut bool // Parker.mu: the listener closed, nothing parks any more

	parked atomic.Int64
	parks  atomic.Uint64
	wakes  atomic.Uint64
	closes [numCloseReasons]atomic.Uint64
}

type accepted struct {
	c   net.Conn
	err error
}

// Listener returns a parking listener for one fasthttp server: its connections park after
// being idle for after at a request boundary. Wrap gives it the listener to accept from.
func (p *Parker) Listener(after time.Duration) *Listener {
	return &Listener{p: p, after: after, accepted: make(chan accepted), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Crowding makes l's connections park after CrowdedAfter, not after l's delay, while served
// (its fasthttp server's count of the connections it serves: waiting for a request or busy)
// is above crowd. Call it once, before serving.
func (l *Listener) Crowding(served func() int32, crowd int32) {
	l.served, l.crowd = served, crowd
}

// delay is how long a connection at a request boundary may wait before it parks, and whether
// that is the crowded delay: one atomic load per request. A connection that was parked early
// once (crowdParked) and came back gets l's delay from then on: it is one that asks again
// within seconds, which parking at every pause would cost a park and a wake per request.
func (l *Listener) delay(crowdParked bool) (time.Duration, bool) {
	if !crowdParked && l.after > CrowdedAfter && l.served != nil && l.served() > l.crowd {
		return CrowdedAfter, true
	}
	return l.after, false
}

// Wrap sets the listener l accepts new connections from and returns l; call it once, before
// serving.
func (l *Listener) Wrap(inner net.Listener) net.Listener {
	l.inner = inner
	return l
}

// Accept returns a parked connection that became readable, or else the next new connection.
// New connections come from a goroutine that accepts from the inner listener (its owner is l:
// it ends when Close closes the inner listener).
func (l *Listener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() { go l.acceptLoop() })
	for {
		if c := l.popWoken(); c != nil {
			return c, nil
		}
		select {
		case a := <-l.accepted:
			if a.err != nil {
				return nil, a.err
			}
			return l.newConn(a.c), nil
		case <-l.wake:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
}

func (l *Listener) newConn(c net.Conn) *Conn {
	pc := &Conn{Transparent: protocol.TransparentTo(c), l: l, index: -1}
	fd, isTLS, ok := descriptor(c)
	pc.fd, pc.tls, pc.noPark = fd, isTLS, !ok
	return pc
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return
			}
		}
	}
}

func (l *Listener) popWoken() *Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.head == len(l.woken) {
		return nil
	}
	c := l.woken[l.head]
	l.woken[l.head] = nil
	l.head++
	if l.head == len(l.woken) {
		l.woken, l.head = l.woken[:0], 0
	}
	return c
}

// deliver queues a readable parked connection for Accept (called by the watcher).
func (l *Listener) deliver(c *Conn) {
	c.idle, c.armed = false, false
	c.state.Store(connServing)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.p.closeParked(c, ClosedAtShutdown, &l.p.work)
		return
	}
	l.woken = append(l.woken, c)
	l.mu.Unlock()
	l.wakes.Add(1)
	l.parked.Add(-1)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close closes the inner listener, the connections parked from l and those woken but not yet
// accepted.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.done)
		if l.inner != nil {
			err = l.inner.Close()
		}
		l.mu.Lock()
		l.closed = true
		woken := l.woken[l.head:]
		l.woken, l.head = nil, 0
		l.mu.Unlock()
		var closing sync.WaitGroup
		for _, c := range woken {
			l.closes[ClosedAtShutdown].Add(1)
			closeConn(c, &closing)
		}
		closing.Wait()
		l.p.closeAll(l)
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats are a listener's parking counters.
type Stats struct {
	Parked int64                   // parked now
	Parks  uint64                  // connections parked, ever
	Wakes  uint64                  // parked connections handed back to fasthttp
	Closed [numCloseReasons]uint64 // parked connections closed, by CloseReason
}

// Parked is how many of l's connections are parked now.
func (l *Listener) Parked() int64 { return l.parked.Load() }

// Stats reads l's counters.
func (l *Listener) Stats() Stats {
	s := Stats{Parked: l.parked.Load(), Parks: l.parks.Load(), Wakes: l.wakes.Load()}
	for i := range s.Closed {
		s.Closed[i] = l.closes[i].Load()
	}
	return s
}

var _ net.Listener = (*Listener)(nil)
