package discovery_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/archway-gateway/archway/discovery"
)

func ExampleNewStatic() {
	src, err := discovery.NewStatic("products", []discovery.Endpoint{
		{Address: "10.0.0.2", Port: 8080, Meta: map[string]string{"weight": "2"}},
		{Address: "10.0.0.1", Port: 8080},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan discovery.Snapshot)
	go func() { _ = src.Watch(ctx, out) }()

	snap := <-out
	fmt.Println(snap.Service, "authoritative:", snap.Authoritative())
	for _, e := range snap.Endpoints {
		fmt.Println(e.HostPort(), "weight", e.Weight)
	}
	// Output:
	// products authoritative: true
	// 10.0.0.1:8080 weight 1
	// 10.0.0.2:8080 weight 2
}

// A Tracker turns snapshots into "the endpoints to use now". The clock is a parameter, so the
// keep_last deadline can be shown without waiting.
func ExampleTracker() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tr, err := discovery.NewTracker("products", discovery.Policy{
		OnEmpty: discovery.OnEmptyKeepLast, KeepLastFor: time.Minute,
	}, clock)
	if err != nil {
		log.Fatal(err)
	}
	show := func(when string) {
		s := tr.State()
		fmt.Printf("%-16s %-9s endpoints=%d stale=%v\n", when, s.Status, len(s.Endpoints), s.Stale())
	}
	show("start")

	tr.Update(discovery.Snapshot{Service: "products", Endpoints: []discovery.Endpoint{
		{ID: "p1", Address: "10.0.0.1", Port: 8080}, {ID: "p2", Address: "10.0.0.2", Port: 8080},
	}})
	show("two passing")

	tr.Update(discovery.Snapshot{Service: "products", Err: fmt.Errorf("consul unreachable")})
	show("consul down")

	tr.Update(discovery.Snapshot{Service: "products"}) // Consul: zero passing instances
	show("zero passing")

	now = now.Add(time.Minute)
	show("a minute later")
	// Output:
	// start            pending   endpoints=0 stale=false
	// two passing      ok        endpoints=2 stale=false
	// consul down      ok        endpoints=2 stale=true
	// zero passing     kept_last endpoints=2 stale=false
	// a minute later   empty     endpoints=0 stale=false
}

func ExampleResolver() {
	src, err := discovery.NewStatic("payments", []discovery.Endpoint{
		{Address: "10.0.0.1", Port: 9000}, {Address: "10.0.0.2", Port: 9000},
	})
	if err != nil {
		log.Fatal(err)
	}
	r, err := discovery.NewResolver("payments", src, discovery.Policy{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	<-r.Ready()

	for range 3 {
		e, err := r.Pick()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("http://" + e.HostPort() + "/charge")
	}
	// Output:
	// http://10.0.0.1:9000/charge
	// http://10.0.0.2:9000/charge
	// http://10.0.0.1:9000/charge
}

// How the gateway follows an upstream in Consul: a Consul source, and a Tracker applying the
// upstream's on_empty policy. onChange rebuilds the balancer; State feeds /upstreams.
func ExampleNewConsul() {
	client, err := discovery.NewClient(discovery.ClientConfig{Address: "127.0.0.1:8500"})
	if err != nil {
		log.Fatal(err)
	}
	src, err := discovery.NewConsul(client, discovery.ConsulOptions{
		Service: "products", Tags: []string{"v2"}, Logger: slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	tracker, err := discovery.NewTracker("products", discovery.Policy{OnEmpty: discovery.OnEmptyKeepLast}, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = tracker.Follow(ctx, src, func(s discovery.State) {
			log.Printf("products: %s, %d endpoints", s.Status, len(s.Endpoints))
		})
	}()
}

// How a backend registers itself; the gateway registers itself the same way as "archway".
func ExampleNewRegistrar() {
	client, err := discovery.NewClient(discovery.ClientConfig{Address: "127.0.0.1:8500"})
	if err != nil {
		log.Fatal(err)
	}
	reg, err := discovery.NewRegistrar(client, discovery.Registration{
		Service: "orders", Address: "10.0.0.7", Port: 9003,
		Tags: []string{"v1"}, Meta: map[string]string{"weight": "1"},
		Check: discovery.HTTPCheck{Path: "/health", Interval: 5 * time.Second},
	}, discovery.RegistrarOptions{Logger: slog.Default()})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }() // registers now or as soon as Consul is up

	// ... serve until shutdown ...
	stop()
	if err := <-done; err != nil {
		log.Printf("deregistration: %v", err)
	}
}
