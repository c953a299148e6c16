package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// rabbitStartTimeout is generous: the broker boots an Erlang VM, which takes seconds on an idle
// machine and much longer on a loaded CI runner.
const rabbitStartTimeout = 3 * time.Minute

// RabbitMQ is a real rabbitmq-server (a single node) on free loopback ports, with its own node
// name, data directory, log directory and HOME (holding its Erlang cookie), no plugins, and
// guest/guest allowed from loopback. The node keeps its data across Stop and Start, as a broker
// that restarts does. Methods are safe for concurrent use.
type RabbitMQ struct {
	URL  string // amqp://guest:guest@127.0.0.1:<port>/
	Port int
	// MetricsURL is the rabbitmq_prometheus plugin's /metrics (per-queue series), with
	// RabbitMQOptions.Prometheus; empty otherwise.
	MetricsURL string
	// StartupTime is how long the last start took until the broker accepted connections.
	StartupTime time.Duration

	mu          sync.Mutex
	proc        *Process
	metricsAddr string // waited for too, when set
}

// RabbitMQOptions adds to the bare broker.
type RabbitMQOptions struct {
	// Prometheus enables the rabbitmq_prometheus plugin with per-queue series (as compose.yaml
	// runs it); the boot takes longer.
	Prometheus bool
}

// StartRabbitMQ starts a broker for this test alone and stops it when the test ends.
func StartRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	return StartRabbitMQWith(t, RabbitMQOptions{})
}

// StartRabbitMQWith is StartRabbitMQ with options.
func StartRabbitMQWith(t testing.TB, opts RabbitMQOptions) *RabbitMQ {
	t.Helper()
	r, err := startRabbitMQ(t, opts)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// The package-wide broker: a broker boot costs seconds, so the tests of one package share one.
var shared struct {
	once sync.Once
	r    *RabbitMQ
	err  error
}

// SharedRabbitMQ returns the broker of this test binary, starting it on first use. Tests that
// share it use their own queue names (or a server-named queue) and must leave it running (or
// Start it again). The package's TestMain calls StopSharedRabbitMQ after m.Run.
func SharedRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	RequireBinary(t, "rabbitmq-server")
	shared.once.Do(func() { shared.r, shared.err = startRabbitMQ(nil, RabbitMQOptions{}) })
	if shared.err != nil {
		t.Fatalf("testenv: %v", shared.err)
	}
	return shared.r
}

// StopSharedRabbitMQ stops the package-wide broker, if one was started.
func StopSharedRabbitMQ() {
	if shared.r != nil {
		shared.r.Stop()
	}
}

// rabbitBinary finds the server script; Debian puts the user-facing wrapper (which insists on
// running as the rabbitmq user) in /usr/sbin and the plain script in /usr/lib/rabbitmq/bin.
func rabbitBinary() (string, bool) {
	if p := "/usr/lib/rabbitmq/bin/rabbitmq-server"; isExecutable(p) {
		return p, true
	}
	return LookBinary("rabbitmq-server")
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// startRabbitMQ starts a broker; with t nil its process outlives any one test.
func startRabbitMQ(t testing.TB, opts RabbitMQOptions) (*RabbitMQ, error) {
	bin, ok := rabbitBinary()
	if !ok {
		if t != nil {
			Missing(t, "rabbitmq-server is not installed")
		}
		return nil, fmt.Errorf("rabbitmq-server is not installed (run `make deps`)")
	}
	dir, err := os.MkdirTemp("", "rabbitmq")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r, err := bootRabbitMQ(bin, dir, attempt, opts)
		if err == nil {
			return r, nil
		}
		lastErr = err // most likely a port lost to someone else: try others
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func bootRabbitMQ(bin, dir string, attempt int, opts RabbitMQOptions) (*RabbitMQ, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	amqpPort, distPort, metricsPort := ports[0], ports[1], ports[2]
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	// Erlang refuses a cookie that others can read.
	cookie := filepath.Join(home, ".erlang.cookie")
	if _, err := os.Stat(cookie); err != nil {
		if err := os.WriteFile(cookie, []byte(fmt.Sprintf("archwaytest%d%d", os.Getpid(), amqpPort)), 0o400); err != nil {
			return nil, err
		}
	}
	// The classic Erlang-term config skips the cuttlefish schema translation of rabbitmq.conf,
	// the slowest part of a boot after the VM itself; an empty plugin list starts nothing else.
	conf := filepath.Join(dir, "rabbitmq.config")
	config := fmt.Sprintf(`{rabbit, [{tcp_listeners, [{"127.0.0.1", %d}]}, {loopback_users, []}]}`, amqpPort)
	enabled := "[]."
	if opts.Prometheus {
		config += fmt.Sprintf(`,
 {rabbitmq_prometheus, [{tcp_config, [{ip, "127.0.0.1"}, {port, %d}]}, {return_per_object_metrics, true}]}`, metricsPort)
		enabled = "[rabbitmq_prometheus]."
	}
	if err := os.WriteFile(conf, []byte("["+config+"].\n"), 0o600); err != nil {
		return nil, err
	}
	plugins := filepath.Join(dir, "enabled_plugins")
	if err := os.WriteFile(plugins, []byte(enabled+"\n"), 0o600); err != nil {
		return nil, err
	}
	env := []string{
		"HOME=" + home,
		fmt.Sprintf("RABBITMQ_NODENAME=archway-test-%d-%d@localhost", os.Getpid(), amqpPort),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", amqpPort),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", distPort),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + conf,
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
		"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(dir, "plugins-expand"),
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
		"RABBITMQ_LOGS=-", // stdout, kept with the process output
		// No busy-waiting schedulers: an idle test broker must not take CPU from the tests on a
		// two-core runner.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none",
	}
	p := &Process{name: "rabbitmq-server", path: bin, env: env, dir: dir, output: &lockedBuffer{}}
	r := &RabbitMQ{URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort), Port: amqpPort, proc: p}
	if opts.Prometheus {
		r.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
		r.metricsAddr = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	}
	if err := r.boot(); err != nil {
		p.Stop()
		return nil, fmt.Errorf("rabbitmq-server did not start (attempt %d): %w\n%s", attempt+1, err, trimOutput(p.Output()))
	}
	return r, nil
}

// boot starts the process and waits until the AMQP port accepts connections: RabbitMQ opens
// its listener only once the broker has booted.
func (r *RabbitMQ) boot() error {
	start := time.Now()
	if err := r.proc.start(); err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", r.Port)
	deadline := time.Now().Add(rabbitStartTimeout)
	for {
		// Plugins start after the broker's own listener.
		if WaitTCP(addr, 200*time.Millisecond) == nil && (r.metricsAddr == "" || WaitTCP(r.metricsAddr, 200*time.Millisecond) == nil) {
			r.StartupTime = time.Since(start)
			return nil
		}
		select {
		case <-r.proc.Exited():
			return fmt.Errorf("exited before accepting connections")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections on %s after %s", addr, rabbitStartTimeout)
		}
	}
}

// Stop shuts the broker down cleanly (SIGTERM; killed after 5 s) and waits for it to exit. Its
// data stays: Start brings the same node back with its durable queues and messages.
func (r *RabbitMQ) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.Stop()
}

// Kill stops the broker with SIGKILL, as a crash would.
func (r *RabbitMQ) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.Kill()
}

// Start starts the stopped broker again on the same ports with the same data, and waits until
// it accepts connections.
func (r *RabbitMQ) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.Stop()
	if err := r.boot(); err != nil {
		t.Fatalf("testenv: rabbitmq-server did not restart: %v\n%s", err, trimOutput(r.proc.Output()))
	}
}

// Output returns what the broker has logged so far.
func (r *RabbitMQ) Output() string { return r.proc.Output() }

// freePorts is FreePorts without a test: n distinct ports, each listener held until all are
// chosen.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
