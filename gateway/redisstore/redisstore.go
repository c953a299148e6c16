// Package redisstore is the gateway's connection to Redis, shared by the policies that keep
// state there (scope: redis rate limits, store: redis caches), and the circuit breaker in front
// of it.
//
// A request never waits on Redis longer than redis.timeout: every call runs under a context with
// that deadline and the client does not retry. After redis.breaker_failures consecutive failures
// the breaker opens: Available reports false and callers take their fallback without touching
// Redis, while one background probe (PING every redis.breaker_probe) waits for Redis to answer
// again and then closes the breaker. go-redis re-dials broken connections by itself; the probe
// is what notices that it can.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Store is one Redis client with its breaker. Safe for concurrent use.
type Store struct {
	Client    redis.UniversalClient
	Timeout   time.Duration
	KeyPrefix string
	cfg       config.Redis

	threshold int32
	probe     time.Duration
	failures  atomic.Int32
	open      atomic.Bool
	// lastTimeout is when the last counted timeout failure was reported (unix nanoseconds).
	lastTimeout atomic.Int64
	wake        chan struct{} // nudges the prober when the breaker opens

	// Counters for metrics, read at scrape time.
	Calls    atomic.Uint64 // calls made to Redis
	Failures atomic.Uint64 // calls that failed or timed out
	Skipped  atomic.Uint64 // calls not made because the breaker was open
	Opened   atomic.Uint64 // times the breaker opened
	// Recovered counts the times the breaker closed again: Redis answered the probe and a pool
	// of warm connections.
	Recovered atomic.Uint64

	logger *slog.Logger
	stop   context.CancelFunc
	done   chan struct{}
}

// New connects lazily to the Redis cfg describes and starts the breaker's prober, which stops
// on Close or when ctx ends.
func New(ctx context.Context, cfg config.Redis, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	quietClientLog.Do(func() { redis.SetLogger(clientLog{logger}) })
	t := cfg.Timeout.D()
	s := &Store{
		Timeout: t, KeyPrefix: cfg.KeyPrefix, cfg: cfg,
		threshold: int32(cfg.BreakerFailures), probe: cfg.BreakerProbe.D(),
		wake: make(chan struct{}, 1), logger: logger, done: make(chan struct{}),
	}
	opts := &redis.UniversalOptions{
		Addrs:                 cfg.Addrs,
		Username:              cfg.Username,
		Password:              cfg.Password.Reveal(),
		DB:                    cfg.DB,
		PoolSize:              cfg.PoolSize,
		DialTimeout:           t,
		ReadTimeout:           t,
		WriteTimeout:          t,
		PoolTimeout:           t,
		ContextTimeoutEnabled: true,
		// A retry doubles how long a request may wait; the breaker handles a Redis that is gone.
		MaxRetries:      -1,
		DisableIdentity: true,
		// Maintenance notifications are a Redis Enterprise handshake; plain servers refuse it.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if cfg.Mode == config.RedisCluster {
		opts.IsClusterMode = true
		opts.MaxRedirects = 3
	}
	s.Client = redis.NewUniversalClient(opts)
	pctx, cancel := context.WithCancel(ctx)
	s.stop = cancel
	go s.runProber(pctx)
	return s
}

// quietClientLog sends go-redis's own log (one line per failed dial) to the first store's
// logger at debug level: the breaker already reports an outage once, at warn.
var quietClientLog sync.Once

type clientLog struct{ l *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.l.Debug(fmt.Sprintf(format, v...), "component", "go-redis")
}

// Config is the configuration the store was built from.
func (s *Store) Config() config.Redis { return s.cfg }

// Available reports whether callers should try Redis: false while the breaker is open.
func (s *Store) Available() bool {
	if s.open.Load() {
		s.Skipped.Add(1)
		return false
	}
	return true
}

// BreakerOpen reports the breaker's state without counting a skipped call.
func (s *Store) BreakerOpen() bool { return s.open.Load() }

// Context returns a context carrying the Redis deadline for one call.
func (s *Store) Context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.Timeout)
}

// Report records the outcome of one call. redis.Nil is a success.
func (s *Store) Report(err error) {
	s.Calls.Add(1)
	if err == nil || errors.Is(err, redis.Nil) {
		if s.failures.Load() != 0 {
			s.failures.Store(0)
		}
		return
	}
	s.Failures.Add(1)
	if s.sameStall(err) {
		return
	}
	if s.failures.Add(1) >= s.threshold && s.open.CompareAndSwap(false, true) {
		s.Opened.Add(1)
		s.logger.Warn("redis unavailable; policies use their fallback until it answers again", "error", err.Error(), "addrs", s.cfg.Addrs)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// sameStall reports whether err is a timeout that ends within one redis.timeout of a timeout
// already counted. One stall (a GC pause, a starved CPU, a Redis that hiccups) times out every
// call in flight at the same moment; counted one by one, a single stall under concurrent load
// was breaker_failures "consecutive" failures, and opened the breaker on a healthy Redis, which
// is how recovery from a hang flapped on a loaded machine. A hung Redis still opens it: calls
// keep timing out one timeout after another. Errors that are answers (refused, reset) count
// each.
func (s *Store) sameStall(err error) bool {
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	now := time.Now().UnixNano()
	last := s.lastTimeout.Load()
	if now-last < int64(s.Timeout) {
		return true
	}
	return !s.lastTimeout.CompareAndSwap(last, now)
}

// runProber closes the breaker once Redis answers a PING again.
func (s *Store) runProber(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		tick := time.NewTicker(s.probe)
		for s.open.Load() {
			select {
			case <-ctx.Done():
				tick.Stop()
				return
			case <-tick.C:
			}
			pctx, cancel := context.WithTimeout(ctx, s.Timeout)
			err := s.Client.Ping(pctx).Err()
			cancel()
			if err == nil && s.warm(ctx) {
				s.failures.Store(0)
				s.open.Store(false)
				s.Recovered.Add(1)
				s.logger.Info("redis answers again; policies use it", "addrs", s.cfg.Addrs)
			}
		}
		tick.Stop()
	}
}

// warm fills the connection pool before the breaker closes. An outage empties it (a command
// that times out takes its connection with it), so without this every request arriving at the
// moment of closing dials at once, each under the request timeout: on a loaded machine enough
// of those handshakes miss redis.timeout in a row to open the breaker again a moment later,
// handing the policies' local fallback another fresh burst each time. Here the connections are
// made by the prober, off the request path, with a longer deadline; the breaker closes only
// when all of them answer, so a Redis still digesting its backlog keeps it open.
func (s *Store) warm(ctx context.Context) bool {
	n := s.poolSize()
	deadline := max(s.Timeout, s.probe, time.Second)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			if err := s.Client.Ping(wctx).Err(); err != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// poolSize is the connections go-redis keeps per node: redis.pool_size, or its own default.
func (s *Store) poolSize() int {
	if s.cfg.PoolSize > 0 {
		return s.cfg.PoolSize
	}
	return 10 * runtime.GOMAXPROCS(0)
}

// Close stops the prober and closes the client's connections.
func (s *Store) Close() error {
	s.stop()
	<-s.done
	return s.Client.Close()
}

// Manager keeps Stores by configuration across reloads: a reload with the same redis section
// keeps its store (connections and breaker state). A store is built when a snapshot needing it
// is built, and retired by Commit once the live configuration no longer names it; it is closed
// after a grace period for requests still using it. Safe for concurrent use.
type Manager struct {
	ctx    context.Context
	logger *slog.Logger
	grace  time.Duration

	mu      sync.Mutex
	stores  map[string]*Store
	live    *Store
	retired sync.WaitGroup
}

// NewManager returns a manager whose stores live until ctx ends or Close.
func NewManager(ctx context.Context, logger *slog.Logger, grace time.Duration) *Manager {
	return &Manager{ctx: ctx, logger: logger, grace: grace, stores: map[string]*Store{}}
}

// Get returns the store for cfg, building it on first use, or nil when cfg configures no Redis.
func (m *Manager) Get(cfg config.Redis) *Store {
	if !cfg.Enabled() {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := configKey(cfg)
	if s, ok := m.stores[k]; ok {
		return s
	}
	s := New(m.ctx, cfg, m.logger)
	m.stores[k] = s
	return s
}

// Commit makes cfg's store the live one and retires every other.
func (m *Manager) Commit(cfg config.Redis) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := ""
	m.live = nil
	if cfg.Enabled() {
		keep = configKey(cfg)
		m.live = m.stores[keep]
	}
	for k, s := range m.stores {
		if k == keep {
			continue
		}
		delete(m.stores, k)
		m.retired.Add(1)
		time.AfterFunc(m.grace, func() { defer m.retired.Done(); _ = s.Close() })
	}
}

// Live returns the store of the committed configuration, or nil.
func (m *Manager) Live() *Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}

// Close closes every store, waiting for retired ones.
func (m *Manager) Close() {
	m.mu.Lock()
	stores := m.stores
	m.stores, m.live = map[string]*Store{}, nil
	m.mu.Unlock()
	for _, s := range stores {
		_ = s.Close()
	}
	m.retired.Wait()
}

func configKey(c config.Redis) string {
	return fmt.Sprintf("%q|%s|%s|%s|%d|%s|%d|%s|%d|%s", c.Addrs, c.Mode, c.Username, c.Password.Reveal(), c.DB,
		c.Timeout.D(), c.PoolSize, c.KeyPrefix, c.BreakerFailures, c.BreakerProbe.D())
}
