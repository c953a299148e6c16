package server_test

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/discovery"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
)

// instance is a test backend registered in Consul with an HTTP check on /health.
type instance struct {
	*upstreamServer
	sick   atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

func startInstance(t *testing.T, consulAddr, name string) *instance {
	t.Helper()
	in := &instance{done: make(chan struct{})}
	in.upstreamServer = startUpstream(t, name, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			if in.sick.Load() {
				ctx.SetStatusCode(503)
			}
			return
		}
		ctx.WriteString(name)
	})
	in.register(t, consulAddr)
	return in
}

func (in *instance) register(t *testing.T, consulAddr string) {
	t.Helper()
	client, err := discovery.NewClient(discovery.ClientConfig{Address: consulAddr})
	if err != nil {
		t.Fatal(err)
	}
	host, portText, _ := net.SplitHostPort(in.Addr)
	port, _ := strconv.Atoi(portText)
	reg, err := discovery.NewRegistrar(client, discovery.Registration{
		Service: "app", ID: "app-" + in.Name, Address: host, Port: port,
		Check: discovery.HTTPCheck{Path: "/health", Interval: time.Second, Timeout: 500 * time.Millisecond},
	}, discovery.RegistrarOptions{ResyncInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done = cancel, make(chan struct{})
	go func() { defer close(in.done); _ = reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-in.done })
}

// deregister stops the instance's registration (it deregisters) while the server keeps running.
func (in *instance) deregister() {
	in.cancel()
	<-in.done
}

func consulGatewayConfig(consulAddr string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
consul: {address: "%s"}
upstreams:
  app:
    balance: round_robin
    consul: {service: app, on_empty: keep_last}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app, timeout: 2s}
`, consulAddr)
}

// load sends requests continuously and records who answered, until stopped.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	failures atomic.Int64
	mu       sync.Mutex
	seen     map[string]int
	since    time.Time
}

func startLoad(t *testing.T, url string, clients int) *load {
	l := &load{stop: make(chan struct{}), seen: map[string]int{}, since: time.Now()}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r, err := tryGet(url)
				if err != nil || r.Status != 200 {
					l.failures.Add(1)
					t.Logf("failed request: %v %d %q", err, r.Status, r.Body)
					continue
				}
				l.mu.Lock()
				l.seen[r.Body]++
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

// reset starts a new counting window.
func (l *load) reset() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.seen
	l.seen = map[string]int{}
	return old
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func waitTargets(t *testing.T, gw *gateway, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(gw.Snapshot().Upstreams["app"].Targets()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream has %d targets, want %d", len(gw.Snapshot().Upstreams["app"].Targets()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsulDiscoveryFollowsInstances: three registered instances share the traffic; one
// deregisters and receives nothing within 2 s, with no failed request; one turns critical and
// leaves; it recovers and comes back. No reload is involved.
func TestConsulDiscoveryFollowsInstances(t *testing.T) {
	consul := testenv.StartConsul(t)
	a := startInstance(t, consul.HTTPAddr, "a")
	b := startInstance(t, consul.HTTPAddr, "b")
	c := startInstance(t, consul.HTTPAddr, "c")
	time.Sleep(1500 * time.Millisecond) // the first checks pass
	gw := startGateway(t, consulGatewayConfig(consul.HTTPAddr))
	waitTargets(t, gw, 3, 5*time.Second)

	l := startLoad(t, gw.URL+"/x", 4)
	defer l.end()
	time.Sleep(500 * time.Millisecond)
	if seen := l.reset(); seen["a"] == 0 || seen["b"] == 0 || seen["c"] == 0 {
		t.Fatalf("traffic over three instances: %v", seen)
	}

	b.deregister()
	waitTargets(t, gw, 2, 2*time.Second)
	time.Sleep(100 * time.Millisecond) // requests already on b finish
	l.reset()
	time.Sleep(500 * time.Millisecond)
	if seen := l.reset(); seen["b"] != 0 || seen["a"] == 0 || seen["c"] == 0 {
		t.Fatalf("after b deregistered: %v", seen)
	}

	c.sick.Store(true)
	waitTargets(t, gw, 1, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	l.reset()
	time.Sleep(500 * time.Millisecond)
	if seen := l.reset(); seen["c"] != 0 || seen["a"] == 0 {
		t.Fatalf("after c turned critical: %v", seen)
	}
	c.sick.Store(false)
	waitTargets(t, gw, 2, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if seen := l.reset(); seen["c"] == 0 {
		t.Fatalf("c recovered but gets no traffic: %v", seen)
	}
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("%d requests failed while instances came and went", f)
	}
	_ = a
}

// TestConsulOutageKeepsServing: Consul is killed under load: no request fails and the last
// endpoints are served (marked stale); Consul comes back (empty, as a restarted dev agent is),
// the instances register again and a new instance is followed.
func TestConsulOutageKeepsServing(t *testing.T) {
	consul := testenv.StartConsul(t)
	startInstance(t, consul.HTTPAddr, "a")
	startInstance(t, consul.HTTPAddr, "b")
	time.Sleep(1500 * time.Millisecond)
	gw := startGateway(t, consulGatewayConfig(consul.HTTPAddr))
	waitTargets(t, gw, 2, 5*time.Second)

	l := startLoad(t, gw.URL+"/x", 4)
	defer l.end()
	consul.Kill()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := gw.DiscoveryState("app")
		if st.Stale() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("discovery never noticed Consul was gone")
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.reset()
	time.Sleep(time.Second)
	if seen := l.reset(); seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("while Consul is down: %v; want the last endpoints served", seen)
	}

	consul.Restart(t)
	newcomer := startInstance(t, consul.HTTPAddr, "newcomer")
	waitTargets(t, gw, 3, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	if seen := l.reset(); seen["newcomer"] == 0 {
		t.Fatalf("after Consul came back a new instance gets no traffic: %v", seen)
	}
	if st, _ := gw.DiscoveryState("app"); st.Stale() || st.Errors == 0 {
		t.Fatalf("discovery state after recovery: %+v", st)
	}
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("%d requests failed during the Consul outage", f)
	}
	_ = newcomer

}
