package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"

	"github.com/archway-gateway/archway/gateway/accesslog"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/metrics"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/router"
	"github.com/archway-gateway/archway/gateway/tracing"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/archway-gateway/archway/gateway/websocket"
)

// Policies builds the per-route policies (CORS, auth, rate limits, static files, ...) of each
// snapshot and keeps their state across reloads. gateway/policies is the gateway's; its table
// is the one place their order is written.
type Policies interface {
	// Route returns the handler of route: next (the forwarder or the direct response) wrapped
	// in the policies the route asks for, or replaced by a terminal one (static files). built
	// names each policy it applied: the snapshot is refused if the route asks for one that is
	// not there, so a configured policy is never silently dropped. It runs when a snapshot is
	// built, under the reload lock.
	Route(route *config.Route, cfg *config.Config, next proxy.Handler) (h proxy.Handler, built []config.PolicyName, err error)
	// Commit is called, under the reload lock, with each configuration that becomes the
	// running one (the first included), so state kept across reloads (rate limit buckets,
	// caches, JWKS caches, file servers) can drop what no live route uses. Builds that fail or
	// only check never reach it.
	Commit(cfg *config.Config)
}

// builder compiles configurations into snapshots. It is used under the gateway's reload lock.
type builder struct {
	registry  *upstream.Registry
	metrics   *metrics.Registry
	policies  Policies
	accessLog *accesslog.Logger // the live one, reused while its output is unchanged
	logger    *slog.Logger      // warnings of the access log's writer
	tunnels   *proxy.Tunnels
	discovery *discoveryManager
	// tracer is the live tracer, reused while server.tracing is unchanged; traceStats counts
	// exports and drops across tracers (tracing.go).
	tracer     *tracing.Tracer
	traceStats *tracing.Stats
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
		RejectEncodedSlash: cfg.Server.EncodedSlashes == config.RejectEncodedSlashes,
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
		if fe := (*upstream.TLSFileError)(nil); errors.As(err, &fe) {
			path := "upstreams." + name + ".tls." + fe.Field
			errs := config.NewErrorList(cfg.File)
			errs.Add(cfg.Position(path), path, fe.Error())
			return nil, errs
		}
		if err != nil {
			return nil, err
		}
		s.Upstreams[name] = u
	}

	entries := make([]router.Route[*proxy.Route], 0, len(cfg.Routes))
	unbuilt := config.NewErrorList(cfg.File)
	for i, rc := range cfg.Routes {
		r, built, err := b.route(rc, cfg, s)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		for _, name := range rc.Policies() {
			if !slices.Contains(built, name) {
				path := fmt.Sprintf("routes[%d].%s", i, name)
				unbuilt.Add(cfg.Position(path), path, fmt.Sprintf("no policy builds it (route %s)", rc.Name))
			}
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
	if err := unbuilt.Err(); err != nil {
		return nil, err
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
		opts := accesslog.Options{Buffer: int(cfg.AccessLog.Buffer.Bytes()), Flush: cfg.AccessLog.Flush.D(), Warn: b.logger}
		if b.accessLog != nil && b.accessLog.Matches(cfg.AccessLog.Output, opts) {
			s.AccessLog = b.accessLog
		} else {
			l, err := accesslog.Open(cfg.AccessLog.Output, opts)
			if err != nil {
				return nil, err
			}
			s.AccessLog = l
		}
	}
	if err := b.buildTracing(cfg, s); err != nil { // last: nothing after it can fail
		return nil, err
	}
	return s, nil
}

func (b *builder) route(rc *config.Route, cfg *config.Config, s *proxy.Snapshot) (*proxy.Route, []config.PolicyName, error) {
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
	r.Redirects = proxy.NewRedirectPolicy(rc.Redirects, r.StripPrefix, r.AddPrefix)
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

	var last proxy.Handler = &proxy.Forwarder{Route: r}
	if d := rc.Respond; d != nil {
		contentType := d.ContentType
		if contentType == "" && d.Body != "" {
			contentType = "text/plain; charset=utf-8"
		}
		last = &proxy.DirectResponse{Status: d.Status, Body: []byte(d.Body), ContentType: []byte(contentType)}
	}
	r.Handler = last
	if b.policies == nil {
		return r, nil, nil
	}
	h, built, err := b.policies.Route(rc, cfg, last)
	if err != nil {
		return nil, nil, err
	}
	r.Handler = h
	return r, built, nil
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
