package upstream

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
)

// Dialer opens a connection to addr within timeout. The zero Settings dial TCP; tests dial
// in-memory listeners.
type Dialer func(addr string, timeout time.Duration) (net.Conn, error)

// Settings are how one target's connections are made and kept. Two targets with the same address
// and equal Settings share nothing but are interchangeable: a reload keeps the existing Target
// (and its warm connections) only when its Settings are unchanged.
type Settings struct {
	ConnectTimeout   time.Duration
	IdleTimeout      time.Duration // idle keep-alive connections older than this are closed
	QueueTimeout     time.Duration // how long a request waits for a connection slot at MaxConns
	MaxConns         int
	MaxResponseBytes int64
	Dial             Dialer `json:"-"`
	// TLS, when set, is the upstream's client TLS configuration (TLSConfig); each target
	// derives its own from it (TargetTLSConfig). tlsKey digests what it was built from.
	TLS    *tls.Config `json:"-"`
	tlsKey string
	// Protocol is http1 (this pool), or h2c or h2 (h2.go).
	Protocol config.UpstreamProtocol
	// RootCAs verify an h2 target's certificate; nil is the system's roots.
	RootCAs *x509.CertPool `json:"-"`
}

// Buffer sizes of an upstream connection. The read buffer bounds the upstream's response header.
// The write buffer holds a request's header and a body of up to about 15 KiB, so such a request
// leaves in one write: with 4 KiB a 4 KiB POST took two (bench: post scenario).
const (
	connReadBufferSize  = 8 << 10
	connWriteBufferSize = 16 << 10
)

// pool is the keep-alive connection pool of one target. It is lock-free: connections live in
// fixed slots, and two index stacks hold the idle slots and the free (unconnected) slots. A
// goroutine that pops an index owns that slot until it pushes the index back, so a pconn is
// only ever touched by its one owner.
type pool struct {
	addr     string
	settings Settings
	tls      *tls.Config // the target's TLS configuration; nil for plain HTTP
	slots    []*pconn
	idle     indexStack
	free     indexStack
	draining atomic.Bool
	dials    atomic.Uint64
	open     atomic.Int64
	// peerClosed counts idle connections found closed (or holding stray bytes) at checkout and
	// discarded before a request was written to them.
	peerClosed atomic.Uint64
	// clientCertAsked is set when a TLS target asked for a client certificate and none is
	// configured: over TLS 1.3 its refusal arrives only after the handshake, as a broken
	// connection, and the error then says why.
	clientCertAsked atomic.Bool
}

// pconn is one upstream connection and its buffers, owned by whoever popped its slot index.
type pconn struct {
	pool     *pool
	index    int
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	fd       int    // the socket, for the idle check at checkout; -1 where there is none
	lastUsed int64  // unix nanoseconds of the last release
	uses     uint64 // completed exchanges on this connection; > 0 means it was reused
	// bodiless is set when the last answer had no body by rule (HEAD, 204, 304): an upstream
	// that sends one anyway leaves it on the connection, so the next checkout asks the kernel
	// whatever the connection's idle time.
	bodiless bool
	// out is bw's destination; raw, for plain TCP connections, lets send write a request and
	// wait for its answer in one step (send.go); await is pc.awaitAnswer, bound once.
	out     sendBuffer
	raw     syscall.RawConn
	await   func(fd uintptr) bool
	sendErr error
	// The socket's deadlines, re-armed lazily (setDeadline).
	rd, wd protocol.LazyDeadline
}

// setDeadline arms the connection's read and write deadlines for one exchange, each only when
// the armed one would not do (protocol.LazyDeadline): a pooled connection carrying a request
// every millisecond re-arms them about once per slack instead of for every request.
func (pc *pconn) setDeadline(t time.Time, slack time.Duration) error {
	rt, armRead := pc.rd.Arm(t, slack)
	wt, armWrite := pc.wd.Arm(t, slack)
	var err error
	switch {
	case armRead && armWrite:
		err = pc.conn.SetDeadline(rt)
	case armRead:
		err = pc.conn.SetReadDeadline(rt)
	case armWrite:
		err = pc.conn.SetWriteDeadline(wt)
	}
	if err != nil {
		pc.rd.Forget()
		pc.wd.Forget()
	}
	return err
}

// setReadDeadline is setDeadline for the read side alone (a streamed body's next read).
func (pc *pconn) setReadDeadline(t time.Time, slack time.Duration) error {
	return pc.rd.Set(t, slack, pc.conn.SetReadDeadline)
}

func newPool(addr string, s Settings) *pool {
	p := &pool{
		addr:     addr,
		settings: s,
		slots:    make([]*pconn, s.MaxConns),
		idle:     newIndexStack(s.MaxConns),
		free:     newIndexStack(s.MaxConns),
	}
	if s.TLS != nil {
		p.tls = TargetTLSConfig(s.TLS, addr)
		if len(p.tls.Certificates) == 0 && p.tls.GetClientCertificate == nil {
			p.tls.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				p.clientCertAsked.Store(true)
				return &tls.Certificate{}, nil // none: the target decides whether that will do
			}
		}
	}
	for i := s.MaxConns - 1; i >= 0; i-- {
		p.free.push(i)
	}
	return p
}

// acquire returns a connection: the most recently used idle one, or a new one. At MaxConns it
// waits for a slot until QueueTimeout or the deadline, whichever is first. With fresh set it
// dials a new connection, closing an idle one to make room if it must: a request that met a
// stale keep-alive connection is repeated on a connection that cannot be stale too.
func (p *pool) acquire(deadline time.Time, now int64, fresh bool) (*pconn, error) {
	if fresh {
		i := p.free.pop()
		if i < 0 {
			if j := p.idle.pop(); j >= 0 {
				p.discard(p.slots[j])
				i = p.free.pop()
			}
		}
		if i >= 0 {
			return p.dial(i, deadline)
		}
		// Every slot is busy: wait like any request (what frees up is most likely idle only
		// for an instant, so it is safe to reuse).
		return p.waitForSlot(deadline)
	}
	if pc := p.popIdle(now); pc != nil {
		return pc, nil
	}
	i := p.free.pop()
	if i < 0 {
		return p.waitForSlot(deadline)
	}
	return p.dial(i, deadline)
}

// idleCheckAfter is how long a connection must have been idle before checkout asks the kernel
// whether the upstream closed it.
const idleCheckAfter = 10 * time.Millisecond

func (p *pool) popIdle(now int64) *pconn {
	for {
		i := p.idle.pop()
		if i < 0 {
			return nil
		}
		pc := p.slots[i]
		if now-pc.lastUsed > int64(p.settings.IdleTimeout) {
			p.discard(pc)
			continue
		}
		// The upstream may have closed the connection while it sat idle (its keep-alive timeout
		// is shorter than ours), or sent bytes nobody asked for; the kernel already knows, so ask
		// before writing a request into it. One non-blocking system call, asked only of a
		// connection idle for idleCheckAfter: under load connections come back sooner, and the
		// call cost 5 % of a proxied request's CPU (bench plain), while keep-alive timeouts that
		// close idle connections are seconds long (Node's: 5 s). A close inside that window is
		// still caught: the request repeats on a newly dialled connection. Stray bytes inside
		// it are not, unless they came with the answer (release finds them buffered) or the
		// answer had no body by rule (bodiless: a body sent after a HEAD answer, the usual way
		// an upstream gets framing wrong).
		bodiless := pc.bodiless
		pc.bodiless = false
		if pc.fd >= 0 && (bodiless || now-pc.lastUsed >= int64(idleCheckAfter)) && idleConnDead(pc.fd) {
			p.peerClosed.Add(1)
			p.discard(pc)
			continue
		}
		return pc
	}
}

// waitForSlot polls for an idle connection or a free slot with a growing sleep. It only runs
// when the target is at MaxConns, which is overload, not the steady state.
func (p *pool) waitForSlot(deadline time.Time) (*pconn, error) {
	limit := time.Now().Add(p.settings.QueueTimeout)
	if !deadline.IsZero() && deadline.Before(limit) {
		limit = deadline
	}
	sleep := 20 * time.Microsecond
	for {
		now := time.Now()
		if pc := p.popIdle(now.UnixNano()); pc != nil {
			return pc, nil
		}
		if i := p.free.pop(); i >= 0 {
			return p.dial(i, deadline)
		}
		if !now.Before(limit) {
			return nil, errNoFreeConns
		}
		time.Sleep(min(sleep, limit.Sub(now)))
		sleep = min(sleep*2, 2*time.Millisecond)
	}
}

func (p *pool) dial(i int, deadline time.Time) (*pconn, error) {
	timeout := p.settings.ConnectTimeout
	if !deadline.IsZero() {
		timeout = min(timeout, time.Until(deadline))
	}
	var conn net.Conn
	fd := -1
	var err error
	if timeout <= 0 {
		err = errDialNoTime
	} else {
		conn, fd, err = p.connect(timeout)
	}
	if err != nil {
		p.free.push(i)
		return nil, err
	}
	pc := p.slots[i]
	if pc == nil {
		pc = &pconn{pool: p, index: i, br: bufio.NewReaderSize(conn, connReadBufferSize)}
		pc.bw = bufio.NewWriterSize(&pc.out, connWriteBufferSize)
		pc.await = pc.awaitAnswer
		p.slots[i] = pc
	} else {
		pc.br.Reset(conn)
		pc.bw.Reset(&pc.out)
	}
	pc.conn = conn
	pc.out = sendBuffer{conn: conn}
	pc.raw = rawConn(conn)
	pc.fd = fd
	pc.uses = 0
	pc.bodiless = false
	p.dials.Add(1)
	p.open.Add(1)
	return pc, nil
}

// connect opens a connection to the target within timeout: the TCP connection and, for a TLS
// upstream, the handshake, which shares the timeout (connect_timeout bounds the whole opening).
// fd is the TCP socket for the idle check at checkout, -1 where there is none. Over TLS the
// socket is still the right thing to ask: an idle TLS connection has nothing to read, so a byte
// there is a close_notify alert or a stray record, and the connection is as unusable as a plain
// one with stray bytes. (TLS 1.3 session tickets arrive before the first response, which reads
// them.)
func (p *pool) connect(timeout time.Duration) (net.Conn, int, error) {
	start := time.Now()
	var conn net.Conn
	var err error
	if p.settings.Dial != nil {
		conn, err = p.settings.Dial(p.addr, timeout)
	} else {
		conn, err = net.DialTimeout("tcp", p.addr, timeout)
	}
	if err != nil {
		return nil, -1, err
	}
	fd := socketFD(conn)
	if p.tls == nil {
		return conn, fd, nil
	}
	tc := tls.Client(conn, p.tls)
	_ = conn.SetDeadline(start.Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = conn.Close()
		return nil, -1, &handshakeError{err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	return tc, fd, nil
}

// release returns a connection after a complete exchange: to the idle stack when it can carry
// another request, closed otherwise. Bytes already read past the end of the response (an
// upstream that sent more than its Content-Length) would be taken as the next response: such a
// connection is closed, never reused. Stray bytes that arrive later are found at checkout.
func (p *pool) release(pc *pconn, reusable bool, now int64) {
	if !reusable || p.draining.Load() || pc.br.Buffered() > 0 {
		p.discard(pc)
		return
	}
	pc.lastUsed = now
	pc.uses++
	p.idle.push(pc.index)
	// A drain that started between the check above and the push has already swept the idle
	// stack; sweep again so this connection does not linger.
	if p.draining.Load() {
		p.closeIdle()
	}
}

// discard closes a connection and frees its slot.
func (p *pool) discard(pc *pconn) {
	_ = pc.conn.Close()
	pc.conn = nil
	pc.out = sendBuffer{}
	pc.raw = nil
	p.open.Add(-1)
	p.free.push(pc.index)
}

func (p *pool) closeIdle() {
	for i := p.idle.pop(); i >= 0; i = p.idle.pop() {
		p.discard(p.slots[i])
	}
}

// drain stops keeping connections: idle ones close now, busy ones when their exchange ends.
// Requests may still use the pool (a request of an old snapshot finishing after a reload); they
// just do not leave connections behind.
func (p *pool) drain() {
	p.draining.Store(true)
	p.closeIdle()
}

// reapIdle closes idle connections unused for longer than IdleTimeout. With a LIFO pool the
// stale ones sink to the bottom, where a steady load never reaches them.
func (p *pool) reapIdle(now int64) {
	var keep []int
	for i := p.idle.pop(); i >= 0; i = p.idle.pop() {
		if pc := p.slots[i]; now-pc.lastUsed > int64(p.settings.IdleTimeout) {
			p.discard(pc)
		} else {
			keep = append(keep, i)
		}
	}
	for k := len(keep) - 1; k >= 0; k-- {
		p.idle.push(keep[k])
	}
}
