// Package server runs the gateway: it compiles configurations into snapshots, serves the public
// listener with fasthttp, applies reloads atomically and shuts down gracefully.
//
// Config lifecycle: load → default → validate (package config) → build an immutable snapshot →
// swap one atomic pointer → commit, which drains what the old snapshot had and the new one does
// not. A failed step leaves the running snapshot untouched.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/discovery"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener"
	"github.com/archway-gateway/archway/gateway/metrics"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/tracing"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Options configure a Gateway beyond routes.yaml.
type Options struct {
	// ConfigPath is the file Reload re-reads.
	ConfigPath string
	Logger     *slog.Logger
	// Dial replaces TCP for upstream connections (tests).
	Dial upstream.Dialer
	// Policies builds every route's policies and keeps their state across reloads (for the
	// gateway: gateway/policies). Nil builds none, so a route asking for one is refused.
	Policies Policies
	// Registerer receives the gateway's metrics; nil means a fresh registry (see Gatherer).
	Registerer prometheus.Registerer
}

// ReloadResult describes the last attempt to change the configuration.
type ReloadResult struct {
	Version uint64    `json:"version"`
	Digest  string    `json:"digest"`
	Source  string    `json:"source"`
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
}

// Gateway is a running Archway. Its methods are safe for concurrent use; reloads are serialised.
type Gateway struct {
	// serving holds the sockets ServeListeners serves; once shutDown is set no more are served.
	// Guarded by servingMu.
	servingMu sync.Mutex
	serving   []net.Listener
	shutDown  bool

	opts    Options
	logger  *slog.Logger
	entry   *proxy.Entry
	drops   logDrops // access log lines dropped, across replaced loggers
	build   builder
	metrics *gatewayMetrics
	conns   *connLimiter // server.max_connections and max_connections_per_ip
	// listeners are the public listeners, in configuration order; adminTLS is the admin API's
	// TLS termination (nil without admin.tls).
	listeners []*listenerRuntime
	adminTLS  *listener.TLS

	reloadMu   sync.Mutex // serialises Apply/Reload; never taken by requests
	version    atomic.Uint64
	lastReload atomic.Pointer[ReloadResult]

	ctx    context.Context // ends at Shutdown; owns the registry's reaper
	cancel context.CancelFunc
	done   chan struct{}
	// stopRegistration deregisters the gateway from Consul: first thing at shutdown, so
	// discovery stops sending traffic before the listener drains.
	stopRegistration context.CancelFunc
}

// New compiles cfg and prepares a gateway; Serve starts it.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	ctx, cancel := context.WithCancel(context.Background())
	registry := upstream.NewRegistry(opts.Dial, opts.Logger)
	g := &Gateway{
		opts:   opts,
		logger: opts.Logger,
		build: builder{
			registry:  registry,
			discovery: newDiscoveryManager(ctx, registry, opts.Logger),
			metrics:   metrics.NewRegistry(),
			policies:  opts.Policies,
			tunnels:   proxy.NewTunnels(ctx, opts.Logger),
			logger:    opts.Logger,
		},
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	g.build.traceStats = &tracing.Stats{Log: opts.Logger}
	prepared, err := g.prepareListeners(cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	snap, err := g.build.build(cfg, 1)
	if err != nil {
		cancel()
		return nil, err
	}
	g.version.Store(1)
	g.entry = proxy.NewEntry(snap, opts.Logger)
	g.build.tunnels.SetKeep(g.tunnelStillRouted)
	g.commit(snap, nil)
	g.lastReload.Store(&ReloadResult{Version: 1, Digest: cfg.Digest(), Source: "start", At: time.Now(), OK: true})

	g.conns = newConnLimiter(func() (int, int) {
		s := g.Config().Server
		return s.MaxConnections, s.MaxConnectionsPerIP
	})
	metrics, err := newGatewayMetrics(g, reg)
	if err != nil {
		cancel()
		return nil, err
	}
	g.metrics = metrics
	g.metrics.reloadResult("start", true)

	g.newListeners(cfg, prepared)
	for _, rt := range g.listeners {
		g.build.tunnels.KeepHijackedConns(rt.server)
	}
	if err := reg.Register(listenerCollector{g}); err != nil {
		cancel()
		return nil, err
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if fingerprint(cfg) != "" { // TLS cannot be turned on by a reload
			g.watchCertificates(ctx)
		}
	}()
	registered := make(chan struct{})
	regCtx, regCancel := context.WithCancel(ctx)
	g.stopRegistration = regCancel
	go func() {
		defer close(registered)
		g.register(regCtx, cfg)
	}()
	go func() {
		g.build.registry.Run(ctx, 5*time.Second)
		g.build.discovery.close()
		<-registered
		<-watched
		close(g.done)
	}()
	return g, nil
}

// register keeps the gateway registered in Consul (consul.register) until ctx ends, then
// deregisters it.
func (g *Gateway) register(ctx context.Context, cfg *config.Config) {
	if cfg.Consul == nil || cfg.Consul.Register == nil {
		return
	}
	r := cfg.Consul.Register
	_, portText, _ := net.SplitHostPort(cfg.Server.Listen)
	port, _ := strconv.Atoi(portText)
	client, err := discovery.NewClient(discovery.ClientConfig{Address: cfg.Consul.Address, Token: cfg.Consul.Token.Reveal(), Datacenter: cfg.Consul.Datacenter})
	if err != nil {
		g.logger.Error("consul registration", "error", err.Error())
		return
	}
	reg, err := discovery.NewRegistrar(client, discovery.Registration{
		Service: r.Service, ID: r.ID, Address: r.Address, Port: port, Tags: r.Tags,
		Meta:  map[string]string{"version": Version},
		Check: discovery.HTTPCheck{Path: cfg.Server.HealthPath},
	}, discovery.RegistrarOptions{Logger: g.logger.With("component", "registration")})
	if err != nil {
		g.logger.Error("consul registration", "error", err.Error())
		return
	}
	if err := reg.Run(ctx); err != nil {
		g.logger.Warn("consul deregistration failed; Consul removes the instance once its check stays critical", "error", err.Error())
	}
}

// DiscoveryState reports what service discovery serves an upstream, when it does.
func (g *Gateway) DiscoveryState(upstreamName string) (discovery.State, bool) {
	return g.build.discovery.state(g.Config(), upstreamName)
}

// Serve accepts connections on ln until Shutdown, as the first listener (with its TLS and PROXY
// protocol settings). Listen and ServeListeners serve every listener.
func (g *Gateway) Serve(ln net.Listener) error { return g.serveOn(0, ln) }

// Shutdown stops accepting connections, lets requests in flight finish within the context's
// deadline (server.shutdown_grace), closes idle keep-alive connections, then releases upstream
// connections. It returns the context's error if requests were still running at the deadline.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopRegistration()
	// Hijacked connections are outside fasthttp's accounting: WebSocket tunnels get a 1001
	// close frame at once (they would never end by themselves) while HTTP requests drain.
	tunnelsDone := make(chan error, 1)
	go func() { tunnelsDone <- g.build.tunnels.ShutdownAll(ctx) }()
	err := g.shutdownListeners(ctx)
	if terr := <-tunnelsDone; err == nil {
		err = terr
	}
	g.cancel()
	<-g.done
	// The certificate managers' work stopped with g.ctx; waiting for it keeps a stopped
	// gateway from writing to the shared storage (a lock taken, an order saved) afterwards.
	g.stopACME()
	if s := g.entry.Load(); s.AccessLog != nil {
		_ = s.AccessLog.Close()
	}
	if t := g.entry.Load().Tracer; t != nil {
		shutdownTracer(t) // exports what the last requests traced
	}
	return err
}

// Snapshot returns the live snapshot.
func (g *Gateway) Snapshot() *proxy.Snapshot { return g.entry.Load() }

// Config returns the live configuration.
func (g *Gateway) Config() *config.Config { return g.entry.Load().Config }

// LastReload returns the result of the last configuration change attempt.
func (g *Gateway) LastReload() ReloadResult { return *g.lastReload.Load() }

// OpenConnections is the number of client connections open now.
func (g *Gateway) OpenConnections() int32 {
	var n int32
	for _, rt := range g.listeners {
		n += rt.server.GetOpenConnectionsCount()
		if rt.h2 != nil {
			n += int32(rt.h2.OpenConnections())
		}
	}
	return n + g.parkedConnections()
}

// Reload re-reads the configuration file and applies it. source names who asked ("api",
// "signal") for the record.
func (g *Gateway) Reload(source string) (ReloadResult, error) {
	cfg, err := config.Load(g.opts.ConfigPath)
	if err != nil {
		return g.recordFailure(source, err), err
	}
	return g.Apply(cfg, source)
}

// Apply makes cfg the running configuration. cfg must come from config.Load or config.Parse
// (defaulted and valid). Settings baked into the listener cannot change without a restart; a
// config changing them is refused as a whole.
func (g *Gateway) Apply(cfg *config.Config, source string) (ReloadResult, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.entry.Load()
	if err := restartOnly(old.Config, cfg); err != nil {
		return g.recordFailure(source, err), err
	}
	prepared, err := g.prepareListeners(cfg)
	if err != nil {
		return g.recordFailure(source, err), err
	}
	version := g.version.Load() + 1
	snap, err := g.build.build(cfg, version)
	if err != nil {
		g.build.registry.Commit(upstreamsOf(old)) // sweep targets the failed build registered
		return g.recordFailure(source, err), err
	}
	g.version.Store(version)
	g.entry.Store(snap)
	g.commitListeners(prepared)
	g.commit(snap, old)
	res := ReloadResult{Version: version, Digest: cfg.Digest(), Source: source, At: time.Now(), OK: true}
	g.lastReload.Store(&res)
	g.metrics.reloadResult(source, true)
	g.logger.Info("configuration applied", "version", version, "digest", res.Digest, "source", source)
	return res, nil
}

// Check builds cfg without publishing it, to validate what only building can tell (e.g. an
// access log file that cannot be opened) and the restart-only settings.
func (g *Gateway) Check(cfg *config.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.entry.Load()
	if err := restartOnly(old.Config, cfg); err != nil {
		return err
	}
	if _, err := g.prepareListeners(cfg); err != nil {
		return err
	}
	snap, err := g.build.build(cfg, 0)
	if err == nil && snap.AccessLog != nil && snap.AccessLog != old.AccessLog {
		_ = snap.AccessLog.Close()
	}
	discardTracer(snap, old)
	g.build.registry.Commit(upstreamsOf(old))
	return err
}

// commit finishes a swap: metrics follow the new routes, upstream targets no longer referenced
// drain, and a replaced access log closes once requests that may still write to it are done.
func (g *Gateway) commit(snap, old *proxy.Snapshot) {
	stats := []*metrics.RouteStats{snap.Unmatched}
	for _, r := range snap.Routes {
		stats = append(stats, r.Stats)
	}
	g.build.metrics.SetLive(stats)
	g.build.registry.Commit(upstreamsOf(snap))
	g.build.discovery.commit(snap.Config, snap.Upstreams)
	g.build.accessLog = snap.AccessLog
	g.build.tracer = snap.Tracer
	if g.opts.Policies != nil {
		g.opts.Policies.Commit(snap.Config)
	}
	if old == nil {
		return
	}
	g.build.tunnels.Reconcile(maxCloseGrace(old))
	releaseTracer(snap, old)
	if old.AccessLog != nil && old.AccessLog != snap.AccessLog {
		l := old.AccessLog
		g.drops.retire(l)
		grace := old.Config.Server.WriteTimeout.D() + old.Config.Server.ReadTimeout.D()
		time.AfterFunc(grace, func() { _ = l.Close(); g.drops.closed(l) })
	}
}

// tunnelStillRouted reports whether the live configuration still has the tunnel's route with
// WebSockets on and the tunnel's target among that route's upstream targets.
func (g *Gateway) tunnelStillRouted(route string, target *upstream.Target) bool {
	for _, r := range g.entry.Load().Routes {
		if r.Name != route || r.WebSocket == nil {
			continue
		}
		for _, t := range r.Upstream.Targets() {
			if t == target {
				return true
			}
		}
	}
	return false
}

func maxCloseGrace(s *proxy.Snapshot) time.Duration {
	var grace time.Duration
	for _, r := range s.Routes {
		if r.WebSocket != nil {
			grace = max(grace, r.WebSocket.CloseGrace)
		}
	}
	return grace
}

func upstreamsOf(s *proxy.Snapshot) []*upstream.Upstream {
	ups := make([]*upstream.Upstream, 0, len(s.Upstreams))
	for _, u := range s.Upstreams {
		ups = append(ups, u)
	}
	return ups
}

func (g *Gateway) recordFailure(source string, err error) ReloadResult {
	res := ReloadResult{Version: g.version.Load(), Digest: g.Config().Digest(), Source: source, At: time.Now(), Error: err.Error()}
	g.lastReload.Store(&res)
	if g.metrics != nil {
		g.metrics.reloadResult(source, false)
	}
	g.logger.Warn("configuration rejected; the running configuration stays", "source", source, "error", err.Error())
	return res
}

// restartOnly refuses changes to settings the listener was started with.
func restartOnly(old, new *config.Config) error {
	type field struct {
		path     string
		old, new any
	}
	fields := []field{
		{"server.listen", old.Server.Listen, new.Server.Listen},
		{"server.read_timeout", old.Server.ReadTimeout, new.Server.ReadTimeout},
		{"server.write_timeout", old.Server.WriteTimeout, new.Server.WriteTimeout},
		{"server.idle_timeout", old.Server.IdleTimeout, new.Server.IdleTimeout},
		{"server.idle_park_after", old.Server.IdleParkAfter, new.Server.IdleParkAfter},
		{"server.write_and_wait", old.Server.WriteAndWait, new.Server.WriteAndWait},
		{"server.max_header_bytes", old.Server.MaxHeaderBytes, new.Server.MaxHeaderBytes},
		{"admin.listen", old.Admin.Listen, new.Admin.Listen},
		{"server.listeners", listenerShape(old), listenerShape(new)},
		{"admin.tls", old.Admin.TLS != nil, new.Admin.TLS != nil},
		{"consul.register", registration(old), registration(new)},
	}
	errs := config.NewErrorList(new.File)
	for _, f := range fields {
		if !reflect.DeepEqual(f.old, f.new) {
			errs.Add(new.Position(f.path), f.path, fmt.Sprintf("changing it needs a restart (running: %v)", f.old))
		}
	}
	return errs.Err()
}

func registration(c *config.Config) string {
	if c.Consul == nil || c.Consul.Register == nil {
		return "none"
	}
	r := c.Consul.Register
	return fmt.Sprintf("%s %s %s %v at %s", r.Service, r.ID, r.Address, r.Tags, c.Consul.Address)
}

// fasthttpLogger sends fasthttp's own messages to the structured log at debug level: they are
// about single misbehaving clients, already answered by the error handler.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}

var _ fasthttp.Logger = fasthttpLogger{}
