package server

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// connLimiter caps the public listener's connections: server.max_connections in all and
// server.max_connections_per_ip from one peer address (nginx worker_connections and limit_conn).
// A connection over a cap is answered 503 and closed before fasthttp sees it. The caps are read
// from the live configuration at each accept, so a reload applies them to new connections.
// Accept and Close take the per-address lock only when the per-address cap is on; requests never
// touch it. Safe for concurrent use.
type connLimiter struct {
	caps func() (total, perIP int)

	open atomic.Int64
	mu   sync.Mutex
	byIP map[netip.Addr]int32 // open connections per peer address, while the per-address cap is on

	refusedTotal atomic.Uint64 // refused by max_connections
	refusedPerIP atomic.Uint64 // refused by max_connections_per_ip
	refusing     atomic.Int32  // refusals being written now
}

// maxRefusing bounds the goroutines that answer refused connections: beyond it, during a flood,
// a refused connection is closed without its 503.
const maxRefusing = 64

// refusal is the whole answer to a connection over a cap.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 38\r\n" +
	"Connection: close\r\nRetry-After: 1\r\n\r\n{\"error\":\"too many open connections\"}\n"

func newConnLimiter(caps func() (total, perIP int)) *connLimiter {
	return &connLimiter{caps: caps, byIP: map[netip.Addr]int32{}}
}

// wrap returns ln with the caps applied to what it accepts.
func (l *connLimiter) wrap(ln net.Listener) net.Listener { return &limitedListener{Listener: ln, l: l} }

type limitedListener struct {
	net.Listener
	l *connLimiter
}

// Accept returns the next connection within the caps, answering the others itself.
func (ln *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc, ok := ln.l.admit(c); ok {
			return lc, nil
		}
	}
}

func (l *connLimiter) admit(c net.Conn) (net.Conn, bool) {
	total, perIP := l.caps()
	if l.open.Add(1) > int64(total) {
		l.open.Add(-1)
		l.refusedTotal.Add(1)
		l.refuse(c)
		return nil, false
	}
	lc := &limitedConn{Transparent: protocol.TransparentTo(c), l: l}
	if perIP > 0 {
		ip := peerAddr(c)
		l.mu.Lock()
		n := l.byIP[ip]
		if int(n) >= perIP {
			l.mu.Unlock()
			l.open.Add(-1)
			l.refusedPerIP.Add(1)
			l.refuse(c)
			return nil, false
		}
		l.byIP[ip] = n + 1
		l.mu.Unlock()
		lc.ip, lc.counted = ip, true
	}
	return lc, true
}

// refuse answers 503 and closes. It reads what the client sent first (briefly), so that closing
// with unread bytes does not reset the connection and destroy the answer before it is read.
func (l *connLimiter) refuse(c net.Conn) {
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, refusal); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

func peerAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}

// limitedConn gives its place back when closed, once. It adds nothing to reads and writes
// (protocol.Transparent): parking finds the socket's descriptor through it, a WebSocket tunnel
// waits on it and half-closes it, the request head check writes responses to it directly.
type limitedConn struct {
	protocol.Transparent
	l       *connLimiter
	ip      netip.Addr
	counted bool // holds a place in byIP
	closed  atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
		if c.counted {
			c.l.mu.Lock()
			if n := c.l.byIP[c.ip] - 1; n > 0 {
				c.l.byIP[c.ip] = n
			} else {
				delete(c.l.byIP, c.ip)
			}
			c.l.mu.Unlock()
		}
	}
	return c.Conn.Close()
}

var descConnsRefused = prometheus.NewDesc("archway_connections_refused_total",
	"Client connections answered 503 and closed at accept, by the cap they hit (max_connections, max_connections_per_ip).",
	[]string{"reason"}, nil)

// connLimitCollector reads the limiter's counters at scrape time.
type connLimitCollector struct{ l *connLimiter }

func (c connLimitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descConnsRefused }

func (c connLimitCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(c.l.refusedTotal.Load()), "max_connections")
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(c.l.refusedPerIP.Load()), "max_connections_per_ip")
}
