package redisstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

func storeConfig(addr string) config.Redis {
	return config.Redis{Addrs: []string{addr}, Mode: config.RedisSingle, Timeout: config.Duration(2 * time.Second),
		KeyPrefix: "t:", BreakerFailures: 2, BreakerProbe: config.Duration(20 * time.Millisecond)}
}

// Against a real redis-server: calls go through, the breaker opens after breaker_failures
// failed calls (and Available refuses without calling), and the prober closes it once Redis
// answers again.
func TestStoreBreakerAgainstRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	s := New(context.Background(), storeConfig(r.Addr), slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = s.Close() })

	ctx, cancel := s.Context()
	err := s.Client.Set(ctx, s.KeyPrefix+"k", "v", time.Minute).Err()
	cancel()
	s.Report(err)
	if err != nil || !s.Available() || s.Calls.Load() != 1 || s.Failures.Load() != 0 {
		t.Fatalf("set: %v, available %v, calls %d, failures %d", err, s.Available(), s.Calls.Load(), s.Failures.Load())
	}

	r.Kill()
	for i := 0; i < 2; i++ {
		ctx, cancel := s.Context()
		err := s.Client.Get(ctx, s.KeyPrefix+"k").Err()
		cancel()
		if err == nil {
			t.Fatal("redis killed, but a call succeeded")
		}
		s.Report(err)
	}
	if !s.BreakerOpen() || s.Opened.Load() != 1 || s.Failures.Load() != 2 {
		t.Fatalf("after two failures: open %v, opened %d, failures %d", s.BreakerOpen(), s.Opened.Load(), s.Failures.Load())
	}
	if s.Available() || s.Skipped.Load() != 1 {
		t.Fatalf("open breaker: available, or skip not counted (%d)", s.Skipped.Load())
	}

	r.Restart(t)
	for s.BreakerOpen() { // the prober pings every breaker_probe; the test's deadline bounds a hang
		time.Sleep(5 * time.Millisecond)
	}
	if !s.Available() {
		t.Fatal("breaker closed, store unavailable")
	}
	// A miss (redis.Nil) is an answer, not a failure.
	ctx, cancel = s.Context()
	err = s.Client.Get(ctx, s.KeyPrefix+"missing").Err()
	cancel()
	s.Report(err)
	if err == nil || s.Failures.Load() != 2 || s.BreakerOpen() {
		t.Fatalf("miss: %v, failures %d, open %v", err, s.Failures.Load(), s.BreakerOpen())
	}
}

// The manager shares one store per configuration, keeps the live one across commits and
// retires the others after its grace.
func TestManagerSharesAndRetiresStores(t *testing.T) {
	r := testenv.StartRedis(t)
	m := NewManager(context.Background(), slog.New(slog.DiscardHandler), time.Millisecond)
	t.Cleanup(m.Close)

	if m.Get(config.Redis{}) != nil {
		t.Fatal("a store for no redis section")
	}
	a := m.Get(storeConfig(r.Addr))
	if m.Get(storeConfig(r.Addr)) != a {
		t.Fatal("the same section got two stores")
	}
	m.Commit(storeConfig(r.Addr))
	if m.Live() != a {
		t.Fatal("committed section is not live")
	}
	other := storeConfig(r.Addr)
	other.KeyPrefix = "u:"
	b := m.Get(other)
	if b == a {
		t.Fatal("a changed section reused the old store")
	}
	m.Commit(other)
	if m.Live() != b {
		t.Fatal("new section is not live")
	}
	m.retired.Wait() // a's retirement: its client closes after the grace
	ctx, cancel := a.Context()
	defer cancel()
	if err := a.Client.Ping(ctx).Err(); err == nil || err.Error() != "redis: client is closed" {
		t.Fatalf("retired store still answers: %v", err)
	}
	m.Commit(config.Redis{})
	if m.Live() != nil {
		t.Fatal("a live store without a redis section")
	}
}
