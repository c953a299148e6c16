package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/hashicorp/consul/api"
)

// consulEnv is a real Consul agent and a client for it.
type consulEnv struct {
	consul *testenv.Consul
	client *api.Client
}

func startConsul(t *testing.T) *consulEnv {
	t.Helper()
	c := testenv.StartConsul(t)
	client, err := NewClient(ClientConfig{Address: c.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	return &consulEnv{consul: c, client: client}
}

// register adds an instance with a TTL check that starts passing, so tests flip its health at will.
func (e *consulEnv) register(t *testing.T, service, id string, port int, tags ...string) {
	t.Helper()
	err := e.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: service, Address: "127.0.0.1", Port: port, Tags: tags,
		Meta:  map[string]string{"weight": "2"},
		Check: &api.AgentServiceCheck{CheckID: "ttl:" + id, TTL: "1h", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

func (e *consulEnv) deregister(t *testing.T, id string) {
	t.Helper()
	if err := e.client.Agent().ServiceDeregister(id); err != nil {
		t.Fatalf("deregister %s: %v", id, err)
	}
}

func (e *consulEnv) setTTL(t *testing.T, id, status string) {
	t.Helper()
	if err := e.client.Agent().UpdateTTL("ttl:"+id, "set by test", status); err != nil {
		t.Fatalf("ttl %s -> %s: %v", id, status, err)
	}
}

// watch runs a Consul source in the background for the rest of the test.
func (e *consulEnv) watch(t *testing.T, opts ConsulOptions) <-chan Snapshot {
	t.Helper()
	src, err := NewConsul(e.client, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Snapshot, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v; want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return within 5s of cancel")
		}
	})
	return out
}

// fastBackoff keeps retries quick so tests about recovery stay short.
var fastBackoff = Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}

func TestConsulSourceFollowsRegistrations(t *testing.T) {
	env := startConsul(t)
	for i, id := range []string{"products-1", "products-2", "products-3"} {
		env.register(t, "products", id, 9001+i)
	}
	env.register(t, "payments", "payments-1", 9100) // another service must not leak in
	out := env.watch(t, ConsulOptions{Service: "products", Backoff: fastBackoff})

	s := next(t, out, 5*time.Second, "three instances", hasIDs("products-1", "products-2", "products-3"))
	e := s.Endpoints[0]
	if e.Address != "127.0.0.1" || e.Port != 9001 || e.Weight != 2 || e.Meta["weight"] != "2" || s.Index == 0 {
		t.Fatalf("endpoint = %+v, index %d; want 127.0.0.1:9001 weight 2 from meta, non-zero index", e, s.Index)
	}

	start := time.Now()
	env.deregister(t, "products-2")
	next(t, out, 2*time.Second, "products-2 gone", hasIDs("products-1", "products-3"))
	t.Logf("deregistration seen after %s", time.Since(start))

	env.register(t, "products", "products-4", 9004)
	next(t, out, 2*time.Second, "products-4 added", hasIDs("products-1", "products-3", "products-4"))
}

func TestConsulSourceDropsCriticalInstancesAndTakesThemBack(t *testing.T) {
	env := startConsul(t)
	env.register(t, "users", "users-1", 9001)
	env.register(t, "users", "users-2", 9002)
	out := env.watch(t, ConsulOptions{Service: "users", Backoff: fastBackoff})
	next(t, out, 5*time.Second, "both instances", hasIDs("users-1", "users-2"))

	env.setTTL(t, "users-2", api.HealthCritical)
	next(t, out, 2*time.Second, "critical users-2 removed", hasIDs("users-1"))

	env.setTTL(t, "users-2", api.HealthWarning) // passing only: a warning is not good enough
	// A marker registered after the warning: the first snapshot with it was taken after the
	// warning was set, so the check cannot pass by nothing arriving in time. No snapshot up to
	// it may hold users-2.
	env.register(t, "users", "users-marker", 9009)
	next(t, out, 5*time.Second, "the marker, and users-2 never back in warning state", func(s Snapshot) bool {
		if slices.Contains(ids(s.Endpoints), "users-2") {
			t.Fatalf("instance in warning state was included: %v", ids(s.Endpoints))
		}
		return hasIDs("users-1", "users-marker")(s)
	})
	env.deregister(t, "users-marker")
	next(t, out, 5*time.Second, "the marker gone", hasIDs("users-1"))

	env.setTTL(t, "users-2", api.HealthPassing)
	next(t, out, 2*time.Second, "recovered users-2 back", hasIDs("users-1", "users-2"))

	env.setTTL(t, "users-1", api.HealthCritical)
	env.setTTL(t, "users-2", api.HealthCritical)
	s := next(t, out, 2*time.Second, "no passing instance", hasIDs())
	if !s.Authoritative() {
		t.Fatal("zero passing instances must be an authoritative (Err == nil) snapshot")
	}
}

func TestConsulSourceFiltersByTags(t *testing.T) {
	env := startConsul(t)
	env.register(t, "orders", "orders-v1", 9001, "v1")
	env.register(t, "orders", "orders-v2", 9002, "v2", "canary")
	env.register(t, "orders", "orders-v2b", 9003, "v2")
	v2 := env.watch(t, ConsulOptions{Service: "orders", Tags: []string{"v2"}})
	canary := env.watch(t, ConsulOptions{Service: "orders", Tags: []string{"v2", "canary"}})
	all := env.watch(t, ConsulOptions{Service: "orders"})
	next(t, v2, 5*time.Second, "the v2 instances", hasIDs("orders-v2", "orders-v2b"))
	next(t, canary, 5*time.Second, "the instance with both tags", hasIDs("orders-v2"))
	next(t, all, 5*time.Second, "all instances", hasIDs("orders-v1", "orders-v2", "orders-v2b"))
}

func TestConsulSourceUnknownDatacenterIsAnError(t *testing.T) {
	env := startConsul(t)
	out := env.watch(t, ConsulOptions{Service: "users", Datacenter: "nowhere", Backoff: fastBackoff})
	s := next(t, out, 5*time.Second, "an error", func(s Snapshot) bool { return s.Err != nil })
	// Consul's own words for a datacenter it has no route to, passed on, not some other failure
	// (a refused connection, a decoding error) that happens to be an error too.
	if !strings.Contains(s.Err.Error(), "No path to datacenter") || s.Authoritative() || len(s.Endpoints) != 0 {
		t.Fatalf("unknown datacenter: err %v, authoritative %v, %d endpoints; want Consul's \"No path to datacenter\" and no endpoints", s.Err, s.Authoritative(), len(s.Endpoints))
	}
	local := env.watch(t, ConsulOptions{Service: "consul", Datacenter: env.consul.Datacenter})
	next(t, local, 5*time.Second, "the consul service in dc1", func(s Snapshot) bool { return s.Err == nil && len(s.Endpoints) == 1 })
}

// TestConsulSourceSurvivesConsulRestart kills Consul under a running watch: the source must report
// the failure while the consumer keeps the last endpoints, then pick up the restarted agent, whose
// index starts far below the one the watch last saw.
func TestConsulSourceSurvivesConsulRestart(t *testing.T) {
	env := startConsul(t)
	// Push the Raft index well above where a fresh agent starts, so a watch that kept blocking on
	// the old index after the restart would sit there for the whole Wait. The registrations come
	// after it: a service's health query reports its own entries' index, not the KV's, so
	// registered first they left it where the restarted agent's empty catalog can reach (once
	// 17 against 17).
	for i := range 100 {
		if _, err := env.client.KV().Put(&api.KVPair{Key: fmt.Sprintf("bump/%d", i), Value: []byte("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"products-1", "products-2", "products-3"} {
		env.register(t, "products", id, 9001+i)
	}
	out := env.watch(t, ConsulOptions{Service: "products", Wait: 30 * time.Second, Backoff: fastBackoff})
	tracker, err := NewTracker("products", Policy{OnEmpty: OnEmptyFail}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := next(t, out, 5*time.Second, "three instances", hasIDs("products-1", "products-2", "products-3"))
	tracker.Update(before)

	env.consul.Kill()
	failed := next(t, out, 5*time.Second, "an error", func(s Snapshot) bool { return s.Err != nil })
	if !slices.Equal(ids(failed.Endpoints), ids(before.Endpoints)) {
		t.Fatalf("failed snapshot carries %v; want the last good set %v", ids(failed.Endpoints), ids(before.Endpoints))
	}
	tracker.Update(failed)
	// More failures arrive, one per retry, each counted.
	tracker.Update(next(t, out, 2*time.Second, "another error", func(s Snapshot) bool { return s.Err != nil }))
	st := tracker.State()
	if st.Status != StatusOK || len(st.Endpoints) != 3 || !st.Stale() || st.Errors < 2 {
		t.Fatalf("tracker while Consul is down: %s %v stale=%v errors=%d; want the 3 kept, stale, counted",
			st.Status, ids(st.Endpoints), st.Stale(), st.Errors)
	}

	env.consul.Restart(t)
	// The restarted dev agent has lost every registration: that is authoritative news.
	s := next(t, out, 5*time.Second, "the empty catalog of the restarted agent", hasIDs())
	if s.Index >= before.Index {
		t.Fatalf("index after restart %d >= before %d; the test needs an index that went backwards", s.Index, before.Index)
	}
	env.register(t, "products", "products-9", 9009)
	s = next(t, out, 5*time.Second, "a registration on the restarted agent", hasIDs("products-9"))
	tracker.Update(s)
	if st := tracker.State(); st.Stale() || !slices.Equal(ids(st.Endpoints), []string{"products-9"}) {
		t.Fatalf("tracker after restart: %v stale=%v", ids(st.Endpoints), st.Stale())
	}
}

func TestConsulSourceBatchesChurn(t *testing.T) {
	env := startConsul(t)
	out := env.watch(t, ConsulOptions{Service: "churn", MinInterval: 500 * time.Millisecond})
	next(t, out, 5*time.Second, "the empty set", hasIDs())

	// 30 changes spread over 1.5s: without the rate limit every one is a query and a snapshot.
	var want []string
	start := time.Now()
	for i := range 30 {
		id := fmt.Sprintf("churn-%02d", i)
		env.register(t, "churn", id, 10000+i)
		want = append(want, id)
		time.Sleep(50 * time.Millisecond)
	}
	received := 0
	next(t, out, 5*time.Second, "all 30 instances", func(s Snapshot) bool {
		received++
		return hasIDs(want...)(s)
	})
	elapsed := time.Since(start)
	// The source starts at most one query per MinInterval, so the snapshots are bounded by the
	// elapsed time, whatever the number of changes.
	limit := int(elapsed/(500*time.Millisecond)) + 2
	t.Logf("30 registrations, all seen after %s in %d snapshots", elapsed, received)
	if received > limit {
		t.Fatalf("%d snapshots in %s; at most %d expected at one query per 500ms", received, elapsed, limit)
	}
}

func TestConsulWatchReturnsOnCancelDuringBlockingQuery(t *testing.T) {
	env := startConsul(t)
	src, err := NewConsul(env.client, ConsulOptions{Service: "idle", Wait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := make(chan Snapshot) // unbuffered and read once: Watch then sits in a blocking query
	go func() { done <- src.Watch(ctx, out) }()
	<-out
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Watch took %s to return", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return on cancel during a blocking query")
	}
}

func TestConsulWatchDoesNotBlockOnAGoneConsumer(t *testing.T) {
	env := startConsul(t)
	env.register(t, "users", "users-1", 9001)
	src, err := NewConsul(env.client, ConsulOptions{Service: "users"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, make(chan Snapshot)) }() // nobody ever reads
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch blocked on a send to a consumer that is gone")
	}
}

func TestNewConsulValidates(t *testing.T) {
	client, err := NewClient(ClientConfig{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewConsul(nil, ConsulOptions{Service: "x"}); err == nil {
		t.Fatal("nil client accepted")
	}
	if _, err := NewConsul(client, ConsulOptions{}); err == nil {
		t.Fatal("empty service accepted")
	}
}

// TestConsulSourceNoticesAHungAgent stops the agent with SIGSTOP: connections are accepted by the
// kernel but nothing answers. The request deadline (Wait + jitter + 5s) must turn that into an
// error snapshot instead of a watch that waits forever.
func TestConsulSourceNoticesAHungAgent(t *testing.T) {
	env := startConsul(t)
	env.register(t, "users", "users-1", 9001)
	out := env.watch(t, ConsulOptions{Service: "users", Wait: time.Second, Backoff: fastBackoff})
	next(t, out, 5*time.Second, "the instance", hasIDs("users-1"))

	proc := env.consul.Process()
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = proc.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	start := time.Now()
	s := next(t, out, 10*time.Second, "an error from the hung agent", func(s Snapshot) bool { return s.Err != nil })
	t.Logf("hung agent noticed after %s: %v", time.Since(start), s.Err)
	if !slices.Equal(ids(s.Endpoints), []string{"users-1"}) {
		t.Fatalf("error snapshot carries %v; want the last good set", ids(s.Endpoints))
	}
	resume()
	next(t, out, 10*time.Second, "recovery after SIGCONT", hasIDs("users-1"))
}
