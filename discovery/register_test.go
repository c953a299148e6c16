package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// healthServer is a real HTTP server whose /health answers 200 or 503 at the test's command.
type healthServer struct {
	*httptest.Server
	healthy atomic.Bool
	hits    atomic.Int64
}

func startHealthServer(t *testing.T) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.healthy.Store(true)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		h.hits.Add(1)
		if !h.healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthServer) hostPort(t *testing.T) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(h.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// runRegistrar runs r until the returned stop is called; stop returns Run's result.
func runRegistrar(t *testing.T, r *Registrar) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Registrar.Run did not return within 10s of cancel")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *consulEnv) agentHas(id string) bool {
	svcs, err := e.client.Agent().Services()
	return err == nil && svcs[id] != nil
}

func TestRegistrarRegistersWithHTTPCheckAndDeregistersOnShutdown(t *testing.T) {
	env := startConsul(t)
	hs := startHealthServer(t)
	host, port := hs.hostPort(t)
	r, err := NewRegistrar(env.client, Registration{
		Service: "orders", Address: host, Port: port,
		Tags: []string{"v1"}, Meta: map[string]string{"weight": "3"},
		Check: HTTPCheck{Interval: time.Second, Timeout: 500 * time.Millisecond, DeregisterCriticalAfter: 90 * time.Second},
	}, RegistrarOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantID := "orders-" + host + "-" + strconv.Itoa(port)
	if r.ID() != wantID {
		t.Fatalf("ID = %q; want %q", r.ID(), wantID)
	}
	// Another process watching: it must see the instance once Consul's HTTP check passes.
	watch := env.watch(t, ConsulOptions{Service: "orders"})
	stop := runRegistrar(t, r)

	s := next(t, watch, 10*time.Second, "the registered instance, passing", hasIDs(wantID))
	if e := s.Endpoints[0]; e.Address != host || e.Port != port || e.Weight != 3 || len(e.Tags) != 1 || e.Tags[0] != "v1" {
		t.Fatalf("endpoint = %+v", e)
	}
	if !r.Registered() || hs.hits.Load() == 0 {
		t.Fatalf("Registered=%v health hits=%d; want registered and checked by Consul", r.Registered(), hs.hits.Load())
	}
	// The api package's HealthCheck lacks Interval and Timeout, which the agent does report.
	var checks map[string]struct{ Type, ServiceID, Interval, Timeout, Output, Status string }
	if err := getJSON(env.consul.URL()+"/v1/agent/checks", &checks); err != nil {
		t.Fatal(err)
	}
	c, ok := checks["service:"+wantID]
	wantURL := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/health"
	if !ok || c.Type != "http" || c.ServiceID != wantID || c.Interval != "1s" || c.Timeout != "500ms" ||
		c.Status != api.HealthPassing || !strings.Contains(c.Output, "GET "+wantURL+": 200") {
		t.Fatalf("checks = %+v; want a passing http check on %s every 1s, timeout 500ms", checks, wantURL)
	}
	// Consul 1.14 reports DeregisterCriticalServiceAfter nowhere; TestNewRegistrarValidates checks
	// what we send.

	// Consul's check follows the instance's /health.
	hs.healthy.Store(false)
	next(t, watch, 5*time.Second, "the failing instance removed", hasIDs())
	hs.healthy.Store(true)
	next(t, watch, 5*time.Second, "the instance back", hasIDs(wantID))

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v; want nil after a clean deregistration", err)
	}
	if env.agentHas(wantID) {
		t.Fatal("still registered after shutdown")
	}
	next(t, watch, 2*time.Second, "the instance gone after shutdown", hasIDs())
}

// TestRegistrarWaitsForConsulAndReregistersAfterRestart starts the registrar while Consul is down,
// then restarts Consul (which forgets every registration) under it.
func TestRegistrarWaitsForConsulAndReregistersAfterRestart(t *testing.T) {
	env := startConsul(t)
	hs := startHealthServer(t)
	host, port := hs.hostPort(t)
	r, err := NewRegistrar(env.client, Registration{ID: "users-a", Service: "users", Address: host, Port: port},
		RegistrarOptions{ResyncInterval: 200 * time.Millisecond, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	env.consul.Kill()
	stop := runRegistrar(t, r)
	time.Sleep(300 * time.Millisecond)
	if r.Registered() {
		t.Fatal("Registered() with Consul down")
	}

	env.consul.Restart(t)
	waitFor(t, 5*time.Second, "registered once Consul is up", func() bool { return env.agentHas("users-a") && r.Registered() })

	// The agent losing the registration while staying reachable (anti-entropy's own case).
	env.deregister(t, "users-a")
	waitFor(t, 5*time.Second, "registered again after the agent lost it", func() bool { return env.agentHas("users-a") })

	// A restarted dev agent starts empty (TestConsulStartsKillsAndRestarts in internal/testenv
	// proves it), so finding the registration again means the Registrar put it back. It is not
	// checked that it is gone right after the restart: the Registrar, resyncing every 200ms, may
	// already have registered again by the time Restart returns on a busy machine.
	for range 2 {
		env.consul.Kill()
		env.consul.Restart(t)
		waitFor(t, 5*time.Second, "registered again after a Consul restart", func() bool { return env.agentHas("users-a") })
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if env.agentHas("users-a") {
		t.Fatal("still registered after shutdown")
	}
}

func TestRegistrarShutdownWithConsulDownReportsTheFailure(t *testing.T) {
	env := startConsul(t)
	r, err := NewRegistrar(env.client, Registration{Service: "users", Address: "127.0.0.1", Port: 9001},
		RegistrarOptions{ResyncInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRegistrar(t, r)
	waitFor(t, 5*time.Second, "registered", r.Registered)
	env.consul.Kill()
	err = stop()
	if err == nil || !strings.Contains(err.Error(), "consul deregister users-127.0.0.1-9001") {
		t.Fatalf("Run = %v; want the deregistration error", err)
	}
}

func TestNewRegistrarValidates(t *testing.T) {
	client, err := NewClient(ClientConfig{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		reg  Registration
		want string
	}{
		{"no service", Registration{Address: "10.0.0.1", Port: 1}, "service name is empty"},
		{"no address", Registration{Service: "s", Port: 1}, "address is empty"},
		{"unspecified address", Registration{Service: "s", Address: "0.0.0.0", Port: 1}, "not reachable by others"},
		{"bad port", Registration{Service: "s", Address: "10.0.0.1"}, "port 0 out of range"},
		{"relative check path", Registration{Service: "s", Address: "10.0.0.1", Port: 1, Check: HTTPCheck{Path: "health"}}, "must start with /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRegistrar(client, tc.reg, RegistrarOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to contain %q", err, tc.want)
			}
		})
	}
	r, err := NewRegistrar(client, Registration{Service: "s", Address: "10.0.0.1", Port: 80}, RegistrarOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chk := r.reg.Check
	if chk.HTTP != "http://10.0.0.1:80/health" || chk.Interval != "10s" || chk.Timeout != "5s" || chk.DeregisterCriticalServiceAfter != "1m0s" {
		t.Fatalf("default check = %+v", chk)
	}
	if r, err = NewRegistrar(client, Registration{Service: "s", Address: "10.0.0.1", Port: 80,
		Check: HTTPCheck{Path: "/ready", Interval: 2 * time.Second, Timeout: 3 * time.Second, DeregisterCriticalAfter: 5 * time.Minute}},
		RegistrarOptions{}); err != nil {
		t.Fatal(err)
	}
	chk = r.reg.Check
	if chk.HTTP != "http://10.0.0.1:80/ready" || chk.Interval != "2s" || chk.Timeout != "2s" || chk.DeregisterCriticalServiceAfter != "5m0s" {
		t.Fatalf("check = %+v; want the path, interval, timeout capped at the interval, deregister after", chk)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
