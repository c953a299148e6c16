package proxy

import (
	"net/netip"
	"time"

	"github.com/archway-gateway/archway/gateway/accesslog"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/metrics"
	"github.com/archway-gateway/archway/gateway/router"
	"github.com/archway-gateway/archway/gateway/tracing"
	"github.com/archway-gateway/archway/gateway/upstream"
)

// Snapshot is one compiled configuration: everything the request path reads, immutable once
// published. The gateway swaps snapshots with one atomic store; requests in flight keep the
// snapshot they started with.
type Snapshot struct {
	Version uint64
	Config  *config.Config

	Routes    []*Route
	Table     *router.Table[*Route]
	Upstreams map[string]*upstream.Upstream

	TrustedProxies     []netip.Prefix
	MaxBodyBytes       int64
	RejectEncodedSlash bool
	HealthPath         []byte
	// SecurityHeaders are added to responses that lack them when no route matched.
	SecurityHeaders []KV

	AccessLog *accesslog.Logger // nil when access logging is off
	// Tunnels is the gateway's registry of open WebSocket tunnels, shared by every snapshot.
	Tunnels *Tunnels
	// Unmatched counts requests that never reached a route (404, 405, 400s).
	Unmatched *metrics.RouteStats
	// Listeners are the per-listener policies, in configuration order.
	Listeners []ListenerPolicy
	// Tracer exports the traces of requests (server.tracing); nil while tracing is off, and
	// then the request path does nothing else for tracing.
	Tracer *tracing.Tracer
}

// Route is a compiled route: its handler chain and what the forwarder and finisher need.
type Route struct {
	Name     string
	Upstream *upstream.Upstream
	Timeout  time.Duration
	// Retries is how many other targets a failed attempt may be repeated on.
	Retries int

	StripPrefix []byte
	AddPrefix   []byte

	RequestHeaders  HeaderOps
	ResponseHeaders HeaderOps
	// SecurityHeaders are the server's security headers minus those this route sets or removes.
	SecurityHeaders []KV

	// WebSocket is set when the route allows upgrades.
	WebSocket *WebSocketPolicy
	// Redirects rewrites URLs in the upstream's response headers; nil when it changes nothing.
	Redirects *RedirectPolicy

	Stats   *metrics.RouteStats
	Handler Handler
	// TraceSampling is the route's own sample ratio as a tracing.Threshold; nil takes the
	// server's.
	TraceSampling *uint64
}

// KV is a header name and value, canonicalised once at build time.
type KV struct{ Key, Value []byte }

// HeaderOps are a route's header changes, applied remove, then set, then add.
type HeaderOps struct {
	Remove [][]byte
	Set    []KV
	Add    []KV
}

// Empty reports whether the ops change nothing.
func (o *HeaderOps) Empty() bool { return len(o.Remove)+len(o.Set)+len(o.Add) == 0 }

// trusted reports whether addr is in the trusted proxy list.
func (s *Snapshot) trusted(addr netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
