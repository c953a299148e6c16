package proxy

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/archway-gateway/archway/gateway/websocket"
	"github.com/valyala/fasthttp"
)

// Tunnels tracks the open WebSocket tunnels so a reload or a shutdown can end them properly.
// One Tunnels lives as long as the gateway, across snapshots. Its lock is taken when a tunnel
// opens or closes and when tunnels are reconciled, never per message. Safe for concurrent use.
type Tunnels struct {
	mu     sync.Mutex
	open   map[*openTunnel]struct{}
	total  map[string]uint64 // tunnels opened, by route
	closed chan struct{}     // signalled when a tunnel closes (for Drain)
	// keep reports whether the live configuration still routes a tunnel (see Reconcile). A
	// tunnel registering after a reload checks it itself, so a reload can never miss it.
	keep func(route string, target *upstream.Target) bool
	// keepsHijacked: the servers leave hijacked connections open (KeepHijackedConns), so a
	// tunnel runs on its own goroutines after its hijack handler returned.
	keepsHijacked atomic.Bool
	// poller holds the idle directions of every tunnel without a goroutine; nil where it could
	// not be made (each direction then keeps a goroutine).
	poller *websocket.Poller
}

// KeepHijackedConns makes s leave a hijacked connection open when its handler returns, and
// the tunnels then outlive their hijack handler: the handler hands both connections to the
// tunnel's two goroutines and returns, and fasthttp frees the upgrade request's state (its
// RequestCtx and read buffer, 16 KiB with the default max_header_bytes) at once instead of
// holding it for the tunnel's life. The tunnel closes the connections itself. Call it for every
// server whose handler serves upgrades, before it serves.
func (ts *Tunnels) KeepHijackedConns(s *fasthttp.Server) {
	s.KeepHijackedConns = true
	ts.keepsHijacked.Store(true)
}

// SetKeep installs the predicate that says whether the live configuration still routes a
// tunnel. Called once, before serving.
func (ts *Tunnels) SetKeep(keep func(route string, target *upstream.Target) bool) {
	ts.mu.Lock()
	ts.keep = keep
	ts.mu.Unlock()
}

type openTunnel struct {
	route  string
	target *upstream.Target
	tunnel *websocket.Tunnel
}

// NewTunnels returns an empty registry whose tunnels wait, while idle, in a websocket.Poller
// that stops when ctx ends. Without one (no epoll: not Linux, or no descriptor left) each
// tunnel direction keeps a goroutine, which logger is told once.
func NewTunnels(ctx context.Context, logger *slog.Logger) *Tunnels {
	ts := &Tunnels{open: map[*openTunnel]struct{}{}, total: map[string]uint64{}, closed: make(chan struct{}, 1)}
	p, err := websocket.NewPoller(ctx)
	if err != nil {
		if logger != nil {
			logger.Warn("idle WebSocket tunnels keep a goroutine per direction", "error", err.Error())
		}
		return ts
	}
	ts.poller = p
	return ts
}

// add registers a tunnel. If a reload removed its route or target while the upgrade was under
// way, the reload's Reconcile may have run before this, so the tunnel schedules its own close.
func (ts *Tunnels) add(route string, target *upstream.Target, t *websocket.Tunnel, grace time.Duration) *openTunnel {
	o := &openTunnel{route: route, target: target, tunnel: t}
	ts.mu.Lock()
	ts.open[o] = struct{}{}
	ts.total[route]++
	keep := ts.keep
	ts.mu.Unlock()
	if keep != nil && !keep(route, target) {
		time.AfterFunc(grace, func() {
			if !keep(route, target) {
				t.Shutdown(websocket.CloseGoingAway)
			}
		})
	}
	return o
}

func (ts *Tunnels) remove(o *openTunnel) {
	ts.mu.Lock()
	delete(ts.open, o)
	ts.mu.Unlock()
	select {
	case ts.closed <- struct{}{}:
	default:
	}
}

// Reconcile is called after a configuration change. keep reports whether a tunnel's route still
// allows WebSockets and still lists its target in the live configuration; tunnels it rejects get
// grace to finish on their own and are then closed with 1001 unless keep changed its mind by then
// (a later reload restored the route).
func (ts *Tunnels) Reconcile(grace time.Duration) {
	ts.mu.Lock()
	keep := ts.keep
	if keep == nil {
		ts.mu.Unlock()
		return
	}
	var doomed []*openTunnel
	for o := range ts.open {
		if !keep(o.route, o.target) {
			doomed = append(doomed, o)
		}
	}
	ts.mu.Unlock()
	if len(doomed) == 0 {
		return
	}
	time.AfterFunc(grace, func() {
		for _, o := range doomed {
			if !keep(o.route, o.target) {
				o.tunnel.Shutdown(websocket.CloseGoingAway)
			}
		}
	})
}

// ShutdownAll closes every tunnel with 1001 and waits until they are gone or ctx ends.
func (ts *Tunnels) ShutdownAll(ctx context.Context) error {
	ts.mu.Lock()
	for o := range ts.open {
		o.tunnel.Shutdown(websocket.CloseGoingAway)
	}
	ts.mu.Unlock()
	for {
		ts.mu.Lock()
		n := len(ts.open)
		ts.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ts.closed:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SocketReaders is the number of open tunnels that wait on both sockets' descriptors (see
// websocket.Tunnel.ReadsSockets): what the listener's connection wrappers allow.
func (ts *Tunnels) SocketReaders() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for o := range ts.open {
		if o.tunnel.ReadsSockets() {
			n++
		}
	}
	return n
}

// Waiting is the number of tunnel directions that wait in the poller, holding no goroutine.
func (ts *Tunnels) Waiting() int {
	if ts.poller == nil {
		return 0
	}
	return ts.poller.Armed()
}

// Counts returns the open and total tunnels by route.
func (ts *Tunnels) Counts() (open map[string]int, total map[string]uint64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	open = map[string]int{}
	for o := range ts.open {
		open[o.route]++
	}
	total = make(map[string]uint64, len(ts.total))
	for k, v := range ts.total {
		total[k] = v
	}
	return open, total
}
