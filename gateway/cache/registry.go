package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/archway-gateway/archway/gateway/routestate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Registry keeps each route's cache by route name, so a reload that keeps a route keeps its
// entries (unless it changes the route's vary list, which changes every key). It owns the
// background refreshes of stale-while-revalidate: they start only while its context lives, and
// Close waits for those running. Safe for concurrent use.
type Registry struct {
	ctx     context.Context
	logger  *slog.Logger
	running sync.WaitGroup
	routes  *routestate.Registry[*routeCache]
}

// routeCache outlives snapshots.
type routeCache struct {
	name    string
	reg     *Registry
	store   *Store
	vary    string
	flights flights
	tier    atomic.Pointer[redisTier] // the live snapshot's, for purges

	hits, misses, stale, bypass, collapsed, refreshes atomic.Uint64
}

// NewRegistry returns an empty registry whose refreshes stop when ctx ends.
func NewRegistry(ctx context.Context, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{ctx: ctx, logger: logger, routes: routestate.New[*routeCache]()}
}

// Middleware builds route's cache, or returns nil when it has none. store is the Redis
// connection for store: redis.
func (r *Registry) Middleware(route *config.Route, store *redisstore.Store) proxy.Middleware {
	c := route.Cache
	if c == nil {
		return nil
	}
	rc := r.route(route.Name, c)
	var tier *redisTier
	if c.Store == config.CacheRedis && store != nil {
		tier = &redisTier{store: store, prefix: store.KeyPrefix + "c:" + route.Name + ":", logger: r.logger}
	}
	rc.tier.Store(tier)
	proto := newMiddleware(rc, c, tier)
	return func(next proxy.Handler) proxy.Handler {
		m := *proto
		m.next = next
		return &m
	}
}

func (r *Registry) route(name string, c *config.Cache) *routeCache {
	vary := strings.Join(c.Vary, ",")
	return r.routes.Use(name,
		func() *routeCache {
			return &routeCache{name: name, reg: r, store: NewStore(c.MaxBytes.Bytes()), vary: vary}
		},
		func(rc *routeCache) {
			rc.store.SetBudget(c.MaxBytes.Bytes())
			if rc.vary != vary { // every key changes: the stored entries can never match again
				rc.store.Purge("")
				rc.vary = vary
			}
		})
}

// Commit keeps the caches of the routes cfg caches and drops every other.
func (r *Registry) Commit(cfg *config.Config) {
	var names []string
	for _, rc := range cfg.Routes {
		if rc.Cache != nil {
			names = append(names, rc.Name)
		}
	}
	r.routes.Commit(names)
}

// ErrUnknownRoute is returned by Purge for a route without a cache.
var ErrUnknownRoute = errors.New("no cached route by that name")

// PurgeResult says what a purge removed.
type PurgeResult struct {
	Routes []string `json:"routes"`
	Memory int      `json:"memory_entries"`
	Redis  int64    `json:"redis_keys"`
}

// Purge removes cached responses: of every route (route ""), or of one, and only those whose
// path starts with pathPrefix when it is set. Shared Redis entries go too.
func (r *Registry) Purge(ctx context.Context, route, pathPrefix string) (PurgeResult, error) {
	var res PurgeResult
	var errs []error
	for _, rc := range r.routes.Live() {
		if route != "" && rc.name != route {
			continue
		}
		res.Routes = append(res.Routes, rc.name)
		res.Memory += rc.store.Purge(pathPrefix)
		if t := rc.tier.Load(); t != nil {
			n, err := t.purge(ctx, pathPrefix)
			res.Redis += n
			if err != nil {
				errs = append(errs, fmt.Errorf("route %s: %w", rc.name, err))
			}
		}
	}
	if route != "" && len(res.Routes) == 0 {
		return res, ErrUnknownRoute
	}
	return res, errors.Join(errs...)
}

// Store returns the named route's store, or nil.
func (r *Registry) Store(route string) *Store {
	if rc, ok := r.routes.Lookup(route); ok {
		return rc.store
	}
	return nil
}

func (r *Registry) startRefresh() bool {
	if r.ctx.Err() != nil {
		return false
	}
	r.running.Add(1)
	return true
}

func (r *Registry) refreshDone() { r.running.Done() }

// Wait waits for background refreshes to finish; call it after ctx ended.
func (r *Registry) Wait() { r.running.Wait() }

var (
	descRequests  = prometheus.NewDesc("archway_cache_requests_total", "Requests seen by a route's cache, by result: hit, stale (served while refreshing), miss, collapsed (waited for another miss), bypass (not cacheable).", []string{"route", "result"}, nil)
	descRefreshes = prometheus.NewDesc("archway_cache_refreshes_total", "Background stale-while-revalidate refreshes started.", []string{"route"}, nil)
	descBytes     = prometheus.NewDesc("archway_cache_bytes", "Bytes a route's cache holds against cache.max_bytes.", []string{"route"}, nil)
	descEntries   = prometheus.NewDesc("archway_cache_entries", "Entries a route's cache holds.", []string{"route"}, nil)
	descEvictions = prometheus.NewDesc("archway_cache_evictions_total", "Entries evicted to stay within cache.max_bytes.", []string{"route"}, nil)
)

// Describe implements prometheus.Collector.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descRefreshes, descBytes, descEntries, descEvictions} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	for _, rc := range r.routes.Live() {
		for _, c := range []struct {
			result string
			n      *atomic.Uint64
		}{{"hit", &rc.hits}, {"stale", &rc.stale}, {"miss", &rc.misses}, {"collapsed", &rc.collapsed}, {"bypass", &rc.bypass}} {
			ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(c.n.Load()), rc.name, c.result)
		}
		ch <- prometheus.MustNewConstMetric(descRefreshes, prometheus.CounterValue, float64(rc.refreshes.Load()), rc.name)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(rc.store.Bytes()), rc.name)
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(rc.store.Len()), rc.name)
		ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(rc.store.Evictions()), rc.name)
	}
}

// redisTier is the shared second level of store: redis. Keys are
// <key_prefix>c:<route>:<path>#<fnv-64a of the full key>, so a purge by path prefix is a SCAN
// MATCH. Entries expire in Redis when they may no longer be served. Calls wait at most the
// Redis timeout and are skipped while the breaker is open: the tier is an optimisation, and
// any failure is a miss.
type redisTier struct {
	store  *redisstore.Store
	prefix string
	logger *slog.Logger
}

func (t *redisTier) key(path string, key []byte) string {
	h := fnv.New64a()
	h.Write(key)
	return fmt.Sprintf("%s%s#%016x", t.prefix, path, h.Sum64())
}

// pathOf extracts the path from a full key (host \0 path \0 ...).
func pathOf(key []byte) string {
	parts := strings.SplitN(string(key), "\x00", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

func (t *redisTier) get(key []byte) *Entry {
	if !t.store.Available() {
		return nil
	}
	ctx, cancel := t.store.Context()
	defer cancel()
	raw, err := t.store.Client.Get(ctx, t.key(pathOf(key), key)).Bytes()
	t.store.Report(err)
	if err != nil {
		return nil
	}
	e := &Entry{}
	if e.UnmarshalBinary(raw) != nil || e.Key != string(key) {
		return nil
	}
	return e
}

func (t *redisTier) put(e *Entry) {
	ttl := time.Until(time.Unix(0, e.StaleUntil))
	if ttl < time.Millisecond || !t.store.Available() {
		return
	}
	raw, _ := e.MarshalBinary()
	ctx, cancel := t.store.Context()
	defer cancel()
	err := t.store.Client.Set(ctx, t.key(e.Path, []byte(e.Key)), raw, ttl).Err()
	t.store.Report(err)
}

// purge deletes the tier's keys under pathPrefix on every master.
func (t *redisTier) purge(ctx context.Context, pathPrefix string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pattern := globEscape(t.prefix+pathPrefix) + "*"
	var deleted atomic.Int64
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			// One key per DEL: in a cluster the keys of a batch live in different slots.
			pipe := c.Pipeline()
			for _, k := range batch {
				pipe.Del(ctx, k)
			}
			cmds, err := pipe.Exec(ctx)
			for _, cmd := range cmds {
				if n, err := cmd.(*redis.IntCmd).Result(); err == nil {
					deleted.Add(n)
				}
			}
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	if cc, ok := t.store.Client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, t.store.Client)
	}
	return deleted.Load(), err
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if slices.Contains([]rune(`*?[]\`), c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
