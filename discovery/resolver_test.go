package discovery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func runResolver(t *testing.T, r *Resolver) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v; want context.Canceled", err)
		}
	})
	select {
	case <-r.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("resolver not ready within 5s")
	}
}

func TestResolverRoundRobin(t *testing.T) {
	src, err := NewStatic("products", []Endpoint{
		{Address: "127.0.0.1", Port: 9001}, {Address: "127.0.0.1", Port: 9002}, {Address: "127.0.0.1", Port: 9003},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver("products", src, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("Pick before Run = %v; want ErrNoEndpoints", err)
	}
	runResolver(t, r)
	counts := map[int]int{}
	var prev int
	for i := range 9 {
		e, err := r.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && e.Port == prev {
			t.Fatalf("pick %d repeated port %d; want round-robin", i, e.Port)
		}
		prev = e.Port
		counts[e.Port]++
	}
	if counts[9001] != 3 || counts[9002] != 3 || counts[9003] != 3 {
		t.Fatalf("picks per port = %v; want 3 each", counts)
	}
}

func TestResolverEmptyIsAnErrorNamingTheService(t *testing.T) {
	src, _ := NewStatic("payments", nil)
	r, err := NewResolver("payments", src, Policy{OnEmpty: OnEmptyFail})
	if err != nil {
		t.Fatal(err)
	}
	runResolver(t, r)
	_, err = r.Pick()
	if !errors.Is(err, ErrNoEndpoints) || err.Error() != "discovery: no endpoints for payments (empty)" {
		t.Fatalf("Pick = %v", err)
	}
}

// TestResolverPicksWhileTheSetChanges runs pickers against updates; -race checks the lock-free
// reads, and every pick must come from one of the sets ever published.
func TestResolverPicksWhileTheSetChanges(t *testing.T) {
	src := scriptedSource{feed: make(chan Snapshot)}
	r, err := NewResolver("products", src, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	src.feed <- good("a", "b")
	<-r.Ready()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e, err := r.Pick()
				if err != nil || e.ID == "" {
					t.Errorf("Pick = %+v, %v", e, err)
					return
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			src.feed <- good("a", "b", "c")
		} else {
			src.feed <- good("d")
		}
	}
	close(stop)
	wg.Wait()
}

func TestResolverFollowsConsul(t *testing.T) {
	env := startConsul(t)
	env.register(t, "payments", "payments-1", 9001)
	env.register(t, "payments", "payments-2", 9002)
	src, err := NewConsul(env.client, ConsulOptions{Service: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver("payments", src, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	runResolver(t, r)
	seen := map[string]bool{}
	for range 4 {
		e, err := r.Pick()
		if err != nil {
			t.Fatal(err)
		}
		seen[e.ID] = true
	}
	if !seen["payments-1"] || !seen["payments-2"] {
		t.Fatalf("picked %v; want both instances", seen)
	}
	env.deregister(t, "payments-1")
	deadline := time.Now().Add(2 * time.Second)
	for len(r.State().Endpoints) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("resolver still has %v 2s after a deregistration", ids(r.State().Endpoints))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e, err := r.Pick(); err != nil || e.ID != "payments-2" {
		t.Fatalf("Pick = %+v, %v; want payments-2", e, err)
	}
}
