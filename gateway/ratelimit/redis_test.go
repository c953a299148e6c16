package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/archway-gateway/archway/internal/testenv"
)

func redisConfig(addr string) config.Redis {
	return config.Redis{
		Addrs: []string{addr}, Mode: "single", Timeout: config.Duration(50 * time.Millisecond),
		KeyPrefix: "test:", BreakerFailures: 3, BreakerProbe: config.Duration(100 * time.Millisecond),
	}
}

func newStore(t testing.TB, addr string) *redisstore.Store {
	t.Helper()
	return newStoreFrom(t, redisConfig(addr))
}

func newStoreFrom(t testing.TB, cfg config.Redis) *redisstore.Store {
	t.Helper()
	s := redisstore.New(testenv.Context(t), cfg, nil)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// faultTimeout is the store timeout of the fault tests. They hold that a failed check costs at
// most one timeout, never a retry or a hang: anything under two timeouts passes, which leaves a
// loaded CI machine a whole timeout of scheduling slack.
const faultTimeout = 300 * time.Millisecond

func newFaultStore(t testing.TB, addr string) *redisstore.Store {
	t.Helper()
	cfg := redisConfig(addr)
	cfg.Timeout = config.Duration(faultTimeout)
	return newStoreFrom(t, cfg)
}

func TestRedisBucket(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := NewRedis(newStore(t, srv.Addr), "users", 100*time.Millisecond, 3)
	for i, want := range []struct {
		allowed   bool
		remaining int
	}{{true, 2}, {true, 1}, {true, 0}, {false, 0}} {
		d, err := r.Allow([]byte("ip:192.0.2.1"))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != want.allowed || d.Remaining != want.remaining || d.Limit != 3 {
			t.Fatalf("request %d: %+v, want allowed=%v remaining=%d", i, d, want.allowed, want.remaining)
		}
		if !d.Allowed && (d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond) {
			t.Fatalf("retry after %v, want (0, 100ms]", d.RetryAfter)
		}
	}
	time.Sleep(110 * time.Millisecond)
	if d, _ := r.Allow([]byte("ip:192.0.2.1")); !d.Allowed {
		t.Fatalf("after one interval: %+v, want admitted", d)
	}
	// Other keys and routes have their own buckets.
	if d, _ := r.Allow([]byte("ip:192.0.2.2")); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("other key: %+v", d)
	}
	// The key expires once its bucket is full again: Redis keeps no idle state.
	ttl := newStore(t, srv.Addr).Client.PTTL(context.Background(), r.Key([]byte("ip:192.0.2.2"))).Val()
	if ttl <= 0 || ttl > 200*time.Millisecond {
		t.Fatalf("bucket key TTL %v, want about one interval", ttl)
	}
}

// Two limiters with their own clients on one key together admit one bucket, not two. The rate
// is one a minute, so the count is exact (plus one per minute the test might take on a loaded
// machine), and the hammering ends when both limiters refuse, not after some wall-clock time.
func TestRedisSharedAcrossClients(t *testing.T) {
	srv := testenv.StartRedis(t)
	const burst = 50
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 2 {
		// A generous store timeout: a reply lost to a timeout on a loaded machine may hide an
		// admission the script made, and this test counts admissions exactly.
		cfg := redisConfig(srv.Addr)
		cfg.Timeout = config.Duration(10 * time.Second)
		r := NewRedis(newStoreFrom(t, cfg), "shared", time.Minute, burst)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				refused := 0
				for refused < 3 { // this client refused a few times in a row: the bucket is spent
					d, err := r.Allow([]byte("k"))
					switch {
					case err != nil:
						t.Errorf("allow: %v", err)
						return
					case d.Allowed:
						admitted.Add(1)
						refused = 0
					default:
						refused++
					}
				}
			}()
		}
	}
	wg.Wait()
	refills := int64(time.Since(start) / time.Minute)
	if got := admitted.Load(); got < burst || got > burst+refills {
		t.Fatalf("two limiters on one key admitted %d, want the one bucket's %d (+%d refilled)", got, burst, refills)
	}
}

func TestRedisOutageOpensBreakerAndRecovers(t *testing.T) {
	srv := testenv.StartRedis(t)
	store := newFaultStore(t, srv.Addr)
	r := NewRedis(store, "outage", time.Millisecond, 100)
	if _, err := r.Allow([]byte("k")); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := r.Allow([]byte("k")); err == nil {
			t.Fatal("a check against a dead Redis succeeded")
		}
		if d := time.Since(start); d >= 2*faultTimeout {
			t.Fatalf("a failed check took %v, want at most about the %v timeout", d, faultTimeout)
		}
	}
	if store.Available() {
		t.Fatal("breaker still closed after 3 consecutive failures")
	}

	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for store.BreakerOpen() {
		if time.Now().After(deadline) {
			t.Fatal("breaker did not close after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := r.Allow([]byte("k")); err != nil {
		t.Fatalf("after Redis restarted (script cache empty): %v", err)
	}
}

// A hung Redis (SIGSTOP: connections open, no answers) costs a check the timeout, not more.
func TestRedisHungIsBoundedByTimeout(t *testing.T) {
	srv := testenv.StartRedis(t)
	store := newFaultStore(t, srv.Addr)
	r := NewRedis(store, "hung", time.Millisecond, 100)
	if _, err := r.Allow([]byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Process().Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process().Signal(syscall.SIGCONT) }()
	var worst time.Duration
	for range 3 {
		start := time.Now()
		if _, err := r.Allow([]byte("k")); err == nil {
			t.Fatal("a check against a stopped Redis succeeded")
		}
		worst = max(worst, time.Since(start))
	}
	if worst >= 2*faultTimeout {
		t.Fatalf("slowest check against a hung Redis took %v; the timeout is %v", worst, faultTimeout)
	}
	if store.Available() {
		t.Fatal("breaker closed after 3 timeouts")
	}
	_ = srv.Process().Signal(syscall.SIGCONT)
	deadline := time.Now().Add(5 * time.Second)
	for store.BreakerOpen() {
		if time.Now().After(deadline) {
			t.Fatal("breaker did not close after Redis resumed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	srv := testenv.StartRedis(b)
	cfg := redisConfig(srv.Addr)
	cfg.Timeout = config.Duration(time.Second) // the machine may be busy; this measures cost, not the deadline
	store := redisstore.New(testenv.Context(b), cfg, nil)
	b.Cleanup(func() { _ = store.Close() })
	r := NewRedis(store, "bench", time.Nanosecond, 1_000_000)
	key := []byte("ip:192.0.2.1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Allow(key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
