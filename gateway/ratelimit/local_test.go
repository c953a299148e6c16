package ratelimit

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func TestLocalBucket(t *testing.T) {
	type step struct {
		at        int64 // ms since start
		allowed   bool
		remaining int
		retry     time.Duration
	}
	for _, tc := range []struct {
		name  string
		rate  time.Duration // interval
		burst int
		steps []step
	}{
		{"burst then refill", 100 * time.Millisecond, 3, []step{
			{0, true, 2, 0}, {0, true, 1, 0}, {0, true, 0, 0}, {0, false, 0, 100 * time.Millisecond},
			{50, false, 0, 50 * time.Millisecond}, {100, true, 0, 0}, {100, false, 0, 100 * time.Millisecond},
			{400, true, 2, 0}, // idle long enough to refill, never above burst
		}},
		{"burst one is a strict rate", 200 * time.Millisecond, 1, []step{
			{0, true, 0, 0}, {100, false, 0, 100 * time.Millisecond}, {200, true, 0, 0}, {1000, true, 0, 0},
		}},
		{"refused requests cost nothing", 100 * time.Millisecond, 1, []step{
			{0, true, 0, 0}, {10, false, 0, 90 * time.Millisecond}, {20, false, 0, 80 * time.Millisecond},
			{30, false, 0, 70 * time.Millisecond}, {100, true, 0, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLocal(tc.rate, tc.burst, 100)
			base := time.Now().UnixNano()
			for i, s := range tc.steps {
				d := l.AllowAt([]byte("k"), base+s.at*ms)
				if d.Allowed != s.allowed || d.Remaining != s.remaining || d.RetryAfter != s.retry || d.Limit != tc.burst {
					t.Fatalf("step %d at %dms: got %+v, want allowed=%v remaining=%d retry=%v", i, s.at, d, s.allowed, s.remaining, s.retry)
				}
			}
		})
	}
}

func TestLocalResetIsTimeToFull(t *testing.T) {
	l := NewLocal(100*time.Millisecond, 10, 100)
	now := time.Now().UnixNano()
	var d Decision
	for range 4 {
		d = l.AllowAt([]byte("k"), now)
	}
	if d.Reset != 400*time.Millisecond || d.Remaining != 6 {
		t.Fatalf("after 4 of 10: %+v, want reset 400ms, remaining 6", d)
	}
}

func TestLocalKeysAreIndependent(t *testing.T) {
	l := NewLocal(time.Second, 1, 100)
	now := time.Now().UnixNano()
	if !l.AllowAt([]byte("a"), now).Allowed || !l.AllowAt([]byte("b"), now).Allowed {
		t.Fatal("first request of each key must pass")
	}
	if l.AllowAt([]byte("a"), now).Allowed {
		t.Fatal("second request of a must be limited")
	}
}

// A flood of distinct keys cannot grow the table past the cap, and keys in active use survive
// it better than a fresh start would suggest: idle ones go first.
func TestLocalKeyCapHoldsUnderFlood(t *testing.T) {
	const maxKeys = 1000
	l := NewLocal(time.Second, 5, maxKeys)
	now := time.Now().UnixNano()
	for i := range 200_000 {
		l.AllowAt([]byte("flood-"+strconv.Itoa(i)), now)
	}
	total := held(t, l)
	limit := maxKeys + numShards // rounded up per shard
	if total > limit || l.Keys() != int64(total) {
		t.Fatalf("%d keys held (counter %d), cap %d", total, l.Keys(), limit)
	}
	if l.Evictions() < 190_000 {
		t.Fatalf("evictions %d, want most of the flood", l.Evictions())
	}
	// Idle keys are swept.
	if n := l.Sweep(now + int64(10*time.Second)); n != total || l.Keys() != 0 {
		t.Fatalf("sweep dropped %d of %d, %d left", n, total, l.Keys())
	}
}

func TestLocalHeapBoundedByCap(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	l := NewLocal(time.Second, 5, 10_000)
	now := time.Now().UnixNano()
	key := make([]byte, 0, 32)
	for i := range 20_000 {
		l.AllowAt(strconv.AppendInt(key[:0], int64(i), 10), now)
	}
	before := heap()
	for i := range 500_000 {
		l.AllowAt(strconv.AppendInt(key[:0], int64(i+1_000_000), 10), now)
	}
	after := heap()
	if after > before+2<<20 {
		t.Fatalf("heap grew from %d to %d bytes under a flood of new keys", before, after)
	}
	runtime.KeepAlive(l)
}

func TestLocalReconfigureKeepsBuckets(t *testing.T) {
	l := NewLocal(time.Second, 2, 100)
	now := time.Now().UnixNano()
	l.AllowAt([]byte("k"), now)
	l.AllowAt([]byte("k"), now)
	l.Configure(time.Second, 3, 100)
	if d := l.AllowAt([]byte("k"), now); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after raising burst to 3 with 2 used: %+v, want the third admitted and none left", d)
	}
}

func TestLocalConcurrentAdmitsExactlyBurst(t *testing.T) {
	l := NewLocal(time.Hour, 50, 100)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if l.Allow([]byte("shared")).Allowed {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 50 {
		t.Fatalf("admitted %d, want exactly the burst of 50", admitted.Load())
	}
}

func TestAppendClientKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		got := string(AppendClientKey(nil, netip.MustParseAddr(tc.in)))
		if got != tc.want {
			t.Errorf("AppendClientKey(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLocalAllowAllocatesNothing(t *testing.T) {
	l := NewLocal(time.Nanosecond, 1000, 100)
	key := []byte("ip:192.0.2.7")
	l.Allow(key)
	if n := testing.AllocsPerRun(1000, func() { l.Allow(key) }); n != 0 {
		t.Fatalf("Allow allocates %.1f times per check", n)
	}
	var buf [64]byte
	ip := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() { AppendClientKey(buf[:0], ip) }); n != 0 {
		t.Fatalf("AppendClientKey allocates %.1f times", n)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	for _, keys := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			l := NewLocal(time.Microsecond, 1000, 100_000)
			names := make([][]byte, keys)
			for i := range names {
				names[i] = AppendClientKey([]byte("ip:"), netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					l.Allow(names[i%keys])
					i++
				}
			})
		})
	}
}

// BenchmarkLocalNewKeys is a flood of keys never seen before against a full table: each check
// inserts a key and evicts one.
func BenchmarkLocalNewKeys(b *testing.B) {
	l := NewLocal(time.Second, 5, 10_000)
	now := time.Now().UnixNano()
	key := make([]byte, 0, 32)
	for i := range 20_000 {
		l.AllowAt(strconv.AppendInt(key[:0], int64(i), 10), now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.AllowAt(strconv.AppendInt(key[:0], int64(i+1_000_000), 10), now)
	}
}
