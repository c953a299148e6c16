package server

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/archway-gateway/archway/gateway/accesslog"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/metrics"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/router"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/archway-gateway/archway/gateway/websocket"
)

// MiddlewareFactory builds a route policy from the route's configuration, or returns nil when
// the route does not use it. Factories run in order when a snapshot is built; the first one
// wraps outermost.
type MiddlewareFactory func(route *config.Route, cfg *config.Config) (proxy.Middleware, error)

// TerminalFactory builds the last handler of a route that does not proxy (a static route). It
// runs when a snapshot is built, like a MiddlewareFactory.
type TerminalFactory func(route *config.Route, cfg *config.Config) (proxy.Handler, error)

// builder compiles configurations into snapshots. It is used under the gateway's reload lock.
type builder struct {
	registry    *upstream.Registry
	metrics     *metrics.Registry
	middlewares []MiddlewareFactory
	terminal    TerminalFactory
	accessLog   *accesslog.Logger // the live one, reused while its output is unchanged
	tunnels     *proxy.Tunnels
	discovery   *discoveryManager
}

// unmatchedRoute labels requests that matched no route.
const unmatchedRoute = "_none"

// build compiles cfg. Nothing it creates is visible to requests until the caller publishes the
// snapshot; on error the caller discards it (new targets it registered are swept by the next
// commit).
func (b *builder) build(cfg *config.Config, version uint64) (*proxy.Snapshot, error) {
	s := &proxy.Snapshot{
		Version:            version,
		Config:             cfg,
		Upstreams:          map[string]*upstream.Upstream{},
		MaxBodyBytes:       cfg.Server.MaxBodyBytes.Bytes(),
		RejectEncodedSlash: cfg.Server.EncodedSlashes == "reject",
		HealthPath:         []byte(cfg.Server.HealthPath),
		SecurityHeaders:    headerList(cfg.Server.SecurityHeaders),
		Unmatched:          b.metrics.Route(unmatchedRoute),
		Tunnels:            b.tunnels,
	}
	for _, p := range cfg.Server.TrustedProxies {
		s.TrustedProxies = append(s.TrustedProxies, p.Prefix)
	}
	for _, name := range sortedNames(cfg.Upstreams) {
		uc := cfg.Upstreams[name]
		var discovered []upstream.TargetSpec
		if uc.Consul != nil {
			var err error
			if discovered, err = b.discovery.endpoints(cfg, name, uc.Consul); err != nil {
				return nil, fmt.Errorf("upstream %s: %w", name, err)
			}
		}
		u, err := b.registry.Build(name, uc, discovered)
		if err != nil {
			return nil, err
		}
		s.Upstreams[name] = u
	}

	entries := make([]router.Route[*proxy.Route], 0, len(cfg.Routes))
	for _, rc := range cfg.Routes {
		r, err := b.route(rc, cfg, s)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		s.Routes = append(s.Routes, r)
		entries = append(entries, router.Route[*proxy.Route]{
			Path:    rc.Match.Path,
			Prefix:  rc.Match.PathPrefix,
			Host:    rc.Match.Host,
			Methods: methodMask(rc.Match.Methods),
			Value:   r,
		})
	}
	table, err := router.New(entries)
	if err != nil {
		return nil, err
	}
	s.Table = table
	if err := buildListenerPolicies(cfg, s, entries); err != nil {
		return nil, err
	}

	if cfg.AccessLog.On() {
		if b.accessLog != nil && b.accessLog.Output == cfg.AccessLog.Output {
			s.AccessLog = b.accessLog
		} else {
			l, err := accesslog.Open(cfg.AccessLog.Output)
			if err != nil {
				return nil, err
			}
			s.AccessLog = l
		}
	}
	return s, nil
}

func (b *builder) route(rc *config.Route, cfg *config.Config, s *proxy.Snapshot) (*proxy.Route, error) {
	r := &proxy.Route{
		Name:            rc.Name,
		Upstream:        s.Upstreams[rc.Upstream],
		Timeout:         rc.Timeout.D(),
		Retries:         rc.Retries,
		RequestHeaders:  headerOps(rc.Headers.Request),
		ResponseHeaders: headerOps(rc.Headers.Response),
		Stats:           b.metrics.Route(rc.Name),
	}
	if ws := rc.WebSocket; ws != nil {
		r.WebSocket = &proxy.WebSocketPolicy{
			Limits:     websocket.Limits{IdleTimeout: ws.IdleTimeout.D(), MaxMessageBytes: ws.MaxMessageBytes.Bytes()},
			CloseGrace: ws.CloseGrace.D(),
		}
	}
	if rc.StripPrefix != "" && rc.StripPrefix != "/" {
		r.StripPrefix = []byte(config.CleanPrefix(rc.StripPrefix))
	}
	if rc.AddPrefix != "" && rc.AddPrefix != "/" {
		r.AddPrefix = []byte(config.CleanPrefix(rc.AddPrefix))
	}
	// The route's own response headers win over the server's security headers.
	overridden := map[string]bool{}
	for k := range rc.Headers.Response.Set {
		overridden[http.CanonicalHeaderKey(k)] = true
	}
	for _, k := range rc.Headers.Response.Remove {
		overridden[http.CanonicalHeaderKey(k)] = true
	}
	for _, kv := range s.SecurityHeaders {
		if !overridden[string(kv.Key)] {
			r.SecurityHeaders = append(r.SecurityHeaders, kv)
		}
	}

	var mws []proxy.Middleware
	for _, f := range b.middlewares {
		mw, err := f(rc, cfg)
		if err != nil {
			return nil, err
		}
		if mw != nil {
			mws = append(mws, mw)
		}
	}
	var last proxy.Handler = &proxy.Forwarder{Route: r}
	if d := rc.Respond; d != nil {
		contentType := d.ContentType
		if contentType == "" && d.Body != "" {
			contentType = "text/plain; charset=utf-8"
		}
		last = &proxy.DirectResponse{Status: d.Status, Body: []byte(d.Body), ContentType: []byte(contentType)}
	}
	if rc.Static != nil {
		if b.terminal == nil {
			return nil, fmt.Errorf("static routes are not supported by this gateway build")
		}
		h, err := b.terminal(rc, cfg)
		if err != nil {
			return nil, err
		}
		last = h
	}
	r.Handler = proxy.Chain(last, mws...)
	return r, nil
}

func methodMask(methods []string) uint32 {
	var mask uint32
	for _, m := range methods {
		if i := protocol.MethodIndex([]byte(m)); i >= 0 {
			mask |= 1 << uint(i)
		}
	}
	return mask
}

func headerList(m map[string]string) []proxy.KV {
	kvs := make([]proxy.KV, 0, len(m))
	for _, k := range sortedNames(m) {
		kvs = append(kvs, proxy.KV{Key: []byte(http.CanonicalHeaderKey(k)), Value: []byte(m[k])})
	}
	return kvs
}

func headerOps(c config.HeaderOps) proxy.HeaderOps {
	ops := proxy.HeaderOps{Set: headerList(c.Set), Add: headerList(c.Add)}
	for _, k := range c.Remove {
		ops.Remove = append(ops.Remove, []byte(http.CanonicalHeaderKey(k)))
	}
	return ops
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
