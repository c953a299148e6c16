package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Consul is a real single-node Consul agent in dev mode (server and client in one process) on
// loopback ports, for one test. The fields are fixed for the life of the agent, across Restart.
// Methods are safe for concurrent use.
type Consul struct {
	HTTPAddr   string // host:port of the HTTP API; pass "http://"+HTTPAddr or URL() to clients
	Datacenter string // "dc1"
	NodeName   string // the agent's node name, as it appears in catalog and health results
	Ports      ConsulPorts
	proc       *Process
}

// ConsulPorts are the loopback ports a test agent listens on. DNS and gRPC are off.
type ConsulPorts struct {
	HTTP, SerfLAN, SerfWAN, Server int
}

// consulReadyTimeout bounds the wait for a leader. A dev agent elects itself in well under a
// second; the margin is for a loaded two-core machine.
const consulReadyTimeout = 30 * time.Second

// StartConsul starts `consul agent -dev` on free loopback ports and waits until it has elected
// itself leader and its own catalog entry is in place, so registrations and queries work at once.
// The agent is stopped when the test ends.
//
// Dev mode keeps everything in memory and the agent gets no data directory, so nothing registered
// survives Kill and Restart: the restarted agent starts from an empty catalog and a low Raft
// index, just as a real Consul that lost its state would look to clients.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	bin := RequireBinary(t, "consul")
	dir := shortTempDir(t, "consul")
	for attempt := 0; ; attempt++ {
		c := &Consul{
			Datacenter: "dc1",
			NodeName:   "archway-test",
			Ports: ConsulPorts{
				HTTP: FreePort(t), SerfLAN: FreePort(t), SerfWAN: FreePort(t), Server: FreePort(t),
			},
		}
		c.HTTPAddr = "127.0.0.1:" + strconv.Itoa(c.Ports.HTTP)
		args := []string{
			"agent", "-dev", "-node=" + c.NodeName, "-datacenter=" + c.Datacenter,
			"-bind=127.0.0.1", "-client=127.0.0.1", "-advertise=127.0.0.1",
			"-http-port=" + strconv.Itoa(c.Ports.HTTP),
			"-serf-lan-port=" + strconv.Itoa(c.Ports.SerfLAN),
			"-serf-wan-port=" + strconv.Itoa(c.Ports.SerfWAN),
			"-server-port=" + strconv.Itoa(c.Ports.Server),
			"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1",
			"-log-level=warn",
			// No calls home; check output changes are synced at once, not every 5 minutes.
			"-hcl=disable_update_check = true",
			`-hcl=check_update_interval = "0s"`,
		}
		c.proc = StartProcess(t, "consul", bin, args, ProcessOptions{Dir: dir})
		if err := c.waitReady(consulReadyTimeout); err != nil {
			c.proc.Stop()
			if attempt < 3 {
				continue // most likely a port taken between FreePort and the bind; try others
			}
			t.Fatalf("testenv: consul did not start: %v\n%s", err, trimOutput(c.proc.Output()))
		}
		return c
	}
}

// URL returns the base URL of the HTTP API, "http://127.0.0.1:<port>".
func (c *Consul) URL() string { return "http://" + c.HTTPAddr }

// Kill stops the agent abruptly, as a crash would. Its state is lost.
func (c *Consul) Kill() { c.proc.Kill() }

// Restart starts the agent again on the same ports (stopping it first if it still runs) and
// waits until it is leader again. The restarted agent has an empty catalog.
func (c *Consul) Restart(t testing.TB) {
	t.Helper()
	c.proc.Restart()
	if err := c.waitReady(consulReadyTimeout); err != nil {
		t.Fatalf("testenv: consul did not restart: %v\n%s", err, trimOutput(c.proc.Output()))
	}
}

// Process returns the underlying process, for signals (SIGSTOP to simulate a hung agent).
func (c *Consul) Process() *Process { return c.proc }

// waitReady waits for a leader and for the leader's own "consul" service in the catalog, which
// the leader registers once it has established leadership.
func (c *Consul) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	exited := c.proc.Exited()
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("consul exited")
		default:
		}
		if last = c.probe(client); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Consul) probe(client *http.Client) error {
	var leader string
	if err := getJSON(client, c.URL()+"/v1/status/leader", &leader); err != nil {
		return err
	}
	if leader == "" {
		return fmt.Errorf("no leader yet")
	}
	var services map[string][]string
	if err := getJSON(client, c.URL()+"/v1/catalog/services", &services); err != nil {
		return err
	}
	if _, ok := services["consul"]; !ok {
		return fmt.Errorf("leader has not registered itself in the catalog yet")
	}
	return nil
}

func getJSON(client *http.Client, url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}
