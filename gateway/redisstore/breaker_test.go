package redisstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

// call is one guarded call as a policy makes it: skipped while the breaker is open.
func call(s *Store) {
	if !s.Available() {
		return
	}
	ctx, cancel := s.Context()
	err := s.Client.Incr(ctx, s.KeyPrefix+"n").Err()
	cancel()
	s.Report(err)
}

// TestBreakerRecoversOnceAfterAHang: Redis hangs (SIGSTOP) under concurrent load, the breaker
// opens; Redis resumes (SIGCONT), the breaker closes, and it stays closed while the load goes on:
// recovery must not flap, because every reopening hands the policies' local fallback a fresh
// burst. The test waits on the breaker's counters, never on the clock.
func TestBreakerRecoversOnceAfterAHang(t *testing.T) {
	srv := testenv.StartRedis(t)
	cfg := config.Redis{Addrs: []string{srv.Addr}, Mode: "single", Timeout: config.Duration(50 * time.Millisecond),
		KeyPrefix: "t:", BreakerFailures: 3, BreakerProbe: config.Duration(100 * time.Millisecond), PoolSize: 8}
	s := New(testenv.Context(t), cfg, nil)
	t.Cleanup(func() { _ = s.Close() })

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				call(s)
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	waitFor(t, "calls before the hang", func() bool { return s.Calls.Load() > 200 })
	// A loaded machine may already have opened the breaker once; start from a closed one.
	waitFor(t, "a closed breaker", func() bool { return !s.BreakerOpen() })
	opened := s.Opened.Load()

	if err := srv.Process().Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = srv.Process().Signal(syscall.SIGCONT)
		}
	}()
	waitFor(t, "the breaker to open", func() bool { return s.BreakerOpen() })
	skipped := s.Skipped.Load()
	waitFor(t, "calls skipped while open", func() bool { return s.Skipped.Load() > skipped+1000 })

	if err := srv.Process().Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	waitFor(t, "the breaker to close", func() bool { return !s.BreakerOpen() })
	reopened := s.Opened.Load()
	calls := s.Calls.Load()
	waitFor(t, "calls after recovery", func() bool { return s.Calls.Load() > calls+3000 || s.Opened.Load() > reopened })
	if n := s.Opened.Load(); n != reopened {
		t.Fatalf("the breaker opened again after Redis resumed: recovery flapped (failures %d of %d calls)", s.Failures.Load(), s.Calls.Load())
	}
	if reopened-opened > 3 {
		t.Fatalf("the breaker opened %d times around one hang", reopened-opened)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOneStallIsOneFailure: every call in flight times out at the same moment when the process
// stalls; that is one failure, not breaker_failures of them. Answers that are errors (refused)
// and timeouts one timeout apart each count.
func TestOneStallIsOneFailure(t *testing.T) {
	cfg := config.Redis{Addrs: []string{"127.0.0.1:1"}, Mode: "single", Timeout: config.Duration(time.Hour),
		KeyPrefix: "t:", BreakerFailures: 3, BreakerProbe: config.Duration(time.Hour)}
	s := New(testenv.Context(t), cfg, nil)
	t.Cleanup(func() { _ = s.Close() })
	for range 8 {
		s.Report(fmt.Errorf("redis: %w", context.DeadlineExceeded))
	}
	if s.BreakerOpen() || s.Failures.Load() != 8 {
		t.Fatalf("8 timeouts of one stall opened the breaker (failures %d)", s.Failures.Load())
	}
	s.Report(nil)
	for range 3 {
		s.Report(fmt.Errorf("dial: %w", syscall.ECONNREFUSED))
	}
	if !s.BreakerOpen() || s.Opened.Load() != 1 {
		t.Fatal("3 refused connections in a row did not open the breaker")
	}

	// Timeouts one timeout apart are a hang, not a stall.
	cfg.Timeout = config.Duration(time.Nanosecond)
	s2 := New(testenv.Context(t), cfg, nil)
	t.Cleanup(func() { _ = s2.Close() })
	for i := 0; !s2.BreakerOpen(); i++ {
		if i > 1000 {
			t.Fatal("timeouts far apart never opened the breaker")
		}
		s2.Report(context.DeadlineExceeded)
	}
}
