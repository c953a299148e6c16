package listener

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyPolicy is who may send PROXY protocol headers to a listener. Swapped atomically on reload.
type ProxyPolicy struct {
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for the header of a new connection.
	HeaderTimeout time.Duration
}

func (p *ProxyPolicy) trusts(a netip.Addr) bool {
	for _, pr := range p.Trusted {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// ProxyProtocol is a listener's PROXY protocol acceptor.
type ProxyProtocol struct {
	policy atomic.Pointer[ProxyPolicy]
	stats  *Stats
}

// NewProxyProtocol returns an acceptor applying p, counting refusals into stats.
func NewProxyProtocol(p *ProxyPolicy, stats *Stats) *ProxyProtocol {
	pp := &ProxyProtocol{stats: stats}
	pp.policy.Store(p)
	return pp
}

// Store publishes a new policy; it applies to connections accepted from now on.
func (pp *ProxyProtocol) Store(p *ProxyPolicy) { pp.policy.Store(p) }

// Listener wraps ln. A connection from a peer outside the trusted CIDRs is closed at once,
// before a byte is read; a trusted one must start with a PROXY v1 or v2 header, whose source
// address becomes the connection's RemoteAddr (a v2 LOCAL header, a load balancer's own health
// check, keeps the peer's address). A missing or malformed header fails the connection's first
// read, which closes it.
func (pp *ProxyProtocol) Listener(ln net.Listener) net.Listener {
	return &proxyListener{Listener: ln, pp: pp}
}

type proxyListener struct {
	net.Listener
	pp *ProxyProtocol
}

func (l *proxyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		policy := l.pp.policy.Load()
		if !policy.trusts(peerAddr(c)) {
			l.pp.stats.ProxyRejected[ProxyUntrusted].Add(1)
			_ = c.Close()
			continue
		}
		pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(policy.HeaderTimeout))
		return &proxyConn{Conn: pc, stats: l.pp.stats}, nil
	}
}

func peerAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// proxyConn counts a connection whose PROXY header could not be read. Read runs on the
// connection's one goroutine.
type proxyConn struct {
	*proxyproto.Conn
	stats   *Stats
	checked bool
}

// ErrProxyHeader is returned by the first read of a connection without a valid PROXY header.
var ErrProxyHeader = errors.New("missing or malformed PROXY protocol header")

func (c *proxyConn) Read(b []byte) (int, error) {
	if !c.checked {
		c.checked = true
		if c.Conn.ProxyHeader() == nil {
			c.stats.ProxyRejected[ProxyMalformed].Add(1)
			_ = c.Conn.Close()
			return 0, ErrProxyHeader
		}
	}
	return c.Conn.Read(b)
}
