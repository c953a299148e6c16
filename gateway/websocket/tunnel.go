package websocket

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound one tunnel.
type Limits struct {
	// IdleTimeout closes the tunnel (code 1001) after this long without a byte in either
	// direction; it also bounds each write. 0 means no limit.
	IdleTimeout time.Duration
	// MaxMessageBytes closes the tunnel (code 1009) when a message, counted over all its
	// fragments, would exceed it. 0 means no limit.
	MaxMessageBytes int64
}

// Stats are what a finished tunnel carried.
type Stats struct {
	ClientToUpstream int64
	UpstreamToClient int64
	CloseCode        uint16 // the code the gateway sent, or 0 when an endpoint ended it
}

// Tunnel relays an upgraded connection between a client and an upstream. Run does the work and
// returns when both directions have ended; Shutdown may be called from any goroutine.
type Tunnel struct {
	client, upstream   net.Conn
	clientR, upstreamR io.Reader // may hold bytes already read past the HTTP head
	limits             Limits

	lastActivity atomic.Int64
	closeCode    atomic.Uint32
	up, down     atomic.Int64
}

// New prepares a tunnel. clientR and upstreamR read from client and upstream, starting with any
// bytes that arrived after the upgrade handshake.
func New(client net.Conn, clientR io.Reader, upstream net.Conn, upstreamR io.Reader, l Limits) *Tunnel {
	t := &Tunnel{client: client, upstream: upstream, clientR: clientR, upstreamR: upstreamR, limits: l}
	t.lastActivity.Store(time.Now().UnixNano())
	return t
}

// Run relays until both directions end, then closes both connections.
func (t *Tunnel) Run() Stats {
	// The handshake left deadlines on both connections; the tunnel sets its own.
	_ = t.client.SetDeadline(time.Time{})
	_ = t.upstream.SetDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.pump(t.clientR, t.client, t.upstream, true, &t.up)
	}()
	t.pump(t.upstreamR, t.upstream, t.client, false, &t.down)
	wg.Wait()
	_ = t.client.Close()
	_ = t.upstream.Close()
	return Stats{ClientToUpstream: t.up.Load(), UpstreamToClient: t.down.Load(), CloseCode: uint16(t.closeCode.Load())}
}

// Shutdown ends the tunnel with a close frame carrying code, sent to each side at the next frame
// boundary (or the connections are simply closed when a frame is in flight). Safe to call more
// than once; the first code wins.
func (t *Tunnel) Shutdown(code uint16) {
	t.closeCode.CompareAndSwap(0, uint32(code))
	// Wake both pumps from their reads.
	now := time.Now()
	_ = t.client.SetReadDeadline(now)
	_ = t.upstream.SetReadDeadline(now)
}

// pump copies src to dst. toUpstream is the client-to-upstream direction, whose frames are
// masked.
func (t *Tunnel) pump(src io.Reader, srcConn, dst net.Conn, toUpstream bool, count *atomic.Int64) {
	scan := newFrameScanner(toUpstream, t.limits.MaxMessageBytes)
	buf := make([]byte, 32<<10)
	have := 0 // an incomplete frame header held back from the previous read
	for {
		if t.closeCode.Load() != 0 {
			t.sendClose(dst, &scan, toUpstream)
			return
		}
		if t.limits.IdleTimeout > 0 {
			_ = srcConn.SetReadDeadline(time.Unix(0, t.lastActivity.Load()).Add(t.limits.IdleTimeout))
		}
		n, err := src.Read(buf[have:])
		if n > 0 {
			t.lastActivity.Store(time.Now().UnixNano())
			data := buf[:have+n]
			fwd, ferr := scan.feed(data)
			if fwd > 0 {
				if t.limits.IdleTimeout > 0 {
					_ = dst.SetWriteDeadline(time.Now().Add(t.limits.IdleTimeout))
				}
				if _, werr := dst.Write(data[:fwd]); werr != nil {
					t.Shutdown(CloseGoingAway)
					return
				}
				count.Add(int64(fwd))
			}
			have = copy(buf, data[fwd:])
			if ferr != nil {
				code := CloseProtocolError
				if errors.Is(ferr, ErrMessageTooBig) {
					code = CloseMessageTooBig
				}
				t.Shutdown(code)
				continue // the loop's first check sends the close frame
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if t.closeCode.Load() != 0 {
					continue
				}
				idle := time.Since(time.Unix(0, t.lastActivity.Load()))
				if t.limits.IdleTimeout > 0 && idle >= t.limits.IdleTimeout {
					t.Shutdown(CloseGoingAway)
				}
				continue // the other direction was active: keep waiting
			}
			// The source closed (or broke): pass the end on and let the other direction finish.
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == io.EOF {
				_ = cw.CloseWrite()
			} else {
				t.Shutdown(CloseGoingAway)
			}
			return
		}
	}
}

// sendClose writes a close frame to dst when nothing is in flight there.
func (t *Tunnel) sendClose(dst net.Conn, scan *frameScanner, toUpstream bool) {
	if !scan.atBoundary() {
		return
	}
	_ = dst.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = dst.Write(closeFrame(uint16(t.closeCode.Load()), toUpstream))
}
