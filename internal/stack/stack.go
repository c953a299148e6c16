// Package stack starts the whole Archway stack as processes: the four reference services (two
// instances each of products and orders) and the gateway in front of them, each waited for
// until healthy, with every line of their output prefixed by the service name. `make run` uses
// it through cmd/stack; the end-to-end tests, the browser test and the benchmark use it with
// free ports.
//
// Addresses reach the gateway through the environment references in routes.yaml
// (${PRODUCTS_1_ADDR:-127.0.0.1:3002} and so on), so one routes.yaml serves both.
package stack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ports are the listen ports of the stack. Defaults are the documented ones.
type Ports struct {
	Gateway, Admin       int
	Users                int
	Products1, Products2 int
	Orders1, Orders2     int
	Payments             int
	// Consul ports, used when Options.Consul is set.
	Consul, SerfLAN, SerfWAN, ConsulServer int
	// RabbitMQ ports, used when Options.RabbitMQ is set.
	AMQP, RabbitDist, RabbitManagement, RabbitMetrics int
}

// DefaultPorts are the ports `make run` uses.
var DefaultPorts = Ports{Gateway: 8080, Admin: 9901, Users: 3001, Products1: 3002, Products2: 3012, Orders1: 3003, Orders2: 3013, Payments: 3004,
	Consul: 8500, SerfLAN: 8301, SerfWAN: 8302, ConsulServer: 8300,
	AMQP: 5672, RabbitDist: 25672, RabbitManagement: 15672, RabbitMetrics: 15692}

// Options describe a stack to start.
type Options struct {
	BinDir  string // where the gateway and service binaries are
	DataDir string // SQLite files and the users signing key; kept between runs
	Config  string // the gateway's routes.yaml
	Ports   Ports
	Out     io.Writer // prefixed output of every process; nil discards it
	// Env is added to every process's environment (e.g. DATABASE_URL overrides).
	Env []string
	// StartTimeout bounds the wait for each service to become healthy (default 60 s).
	StartTimeout time.Duration
	// Consul runs a Consul agent (-dev) first: the services register with it, orders finds its
	// peers through it, and the gateway (with a config that says so) discovers its targets.
	Consul bool
	// RabbitMQ runs a local rabbitmq-server first (data under DataDir/rabbitmq): orders publishes
	// its events there and feeds its WebSockets from it, products releases the stock of
	// cancelled and expired orders from it.
	RabbitMQ bool
	// EventsSecret is shared by orders and products: without a broker, orders pushes the order
	// events products consumes (order.cancelled) to it, signed with it. Start makes a random
	// one per run when empty, so the stock of cancelled and expired orders comes back on
	// embedded defaults too.
	EventsSecret string
	// Jaeger runs bin/jaeger first (tracing.go) and every process sends it its traces;
	// OTLPEndpoint sends them to a collector of the caller's instead.
	Jaeger       bool
	OTLPEndpoint string
}

// Service is one process of the stack.
type Service struct {
	Name   string
	Binary string
	Args   []string
	Env    []string
	Addr   string // host:port it listens on
	Health string // path answering 200 when ready
	// StopSignal ends the process gracefully; SIGTERM when zero (Consul wants SIGINT).
	StopSignal syscall.Signal
	// AnyExitAfterStop accepts any exit status once Stop asked the process to end: a Consul dev
	// agent reports errors of its own leave and exits 1 on every graceful stop.
	AnyExitAfterStop bool
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// Services returns the stack's processes in start order (each group waits for the previous).
func (o Options) Services() [][]Service {
	p := o.Ports
	db := func(name string) string { return "DATABASE_URL=" + filepath.Join(o.DataDir, name+".db") }
	jwks := "JWKS_URL=http://" + addr(p.Users) + "/.well-known/jwks.json"
	bin := func(name string) string { return filepath.Join(o.BinDir, name) }
	backend := func(name, binary string, port int, env ...string) Service {
		return Service{Name: name, Binary: bin(binary), Addr: addr(port), Health: "/health",
			Env: append([]string{"ADDR=" + addr(port)}, env...)}
	}
	// Only the two services that use it get the events secret.
	pushSecret := "EVENTS_SECRET=" + o.EventsSecret
	peers := []string{
		jwks,
		"PRODUCTS_URL=http://" + addr(p.Products1),
		"PAYMENTS_URL=http://" + addr(p.Payments),
		"USERS_URL=http://" + addr(p.Users),
	}
	var groups [][]Service
	if o.Consul {
		peers = append(peers, "CONSUL_HTTP_ADDR="+addr(p.Consul))
		groups = append(groups, []Service{{
			Name: "consul", Binary: bin("consul"), Addr: addr(p.Consul), Health: "/v1/status/leader", StopSignal: syscall.SIGINT, AnyExitAfterStop: true,
			Args: []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn",
				"-http-port", fmt.Sprint(p.Consul), "-serf-lan-port", fmt.Sprint(p.SerfLAN), "-serf-wan-port", fmt.Sprint(p.SerfWAN),
				"-server-port", fmt.Sprint(p.ConsulServer), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
				"-hcl", "disable_update_check = true"},
		}})
	}
	if o.RabbitMQ {
		peers = append(peers, "AMQP_URL="+o.AMQPURL())
		groups = append(groups, []Service{o.rabbitMQService()})
	}
	users := backend("users", "users", p.Users, db("users"), "JWT_PRIVATE_KEY_FILE="+filepath.Join(o.DataDir, "users-ed25519.pem"))
	if o.Consul {
		users.Env = append(users.Env, "CONSUL_HTTP_ADDR="+addr(p.Consul))
	}
	return o.withTracing(append(groups, [][]Service{
		{users},
		{
			backend("products-1", "products", p.Products1, append([]string{db("products"), pushSecret}, peers...)...),
			backend("products-2", "products", p.Products2, append([]string{db("products"), pushSecret}, peers...)...),
			backend("payments", "payments", p.Payments, append([]string{db("payments")}, peers...)...),
		},
		{
			backend("orders-1", "orders", p.Orders1, append([]string{db("orders"), pushSecret}, peers...)...),
			backend("orders-2", "orders", p.Orders2, append([]string{db("orders"), pushSecret}, peers...)...),
		},
		{{
			Name: "gateway", Binary: bin("gateway"), Args: []string{"-config", o.Config},
			Addr: addr(p.Gateway), Health: "/health",
			Env: []string{
				fmt.Sprintf("ARCHWAY_LISTEN=:%d", p.Gateway),
				"ARCHWAY_ADMIN_LISTEN=" + addr(p.Admin),
				"USERS_ADDR=" + addr(p.Users),
				"PRODUCTS_1_ADDR=" + addr(p.Products1),
				"PRODUCTS_2_ADDR=" + addr(p.Products2),
				"ORDERS_1_ADDR=" + addr(p.Orders1),
				"ORDERS_2_ADDR=" + addr(p.Orders2),
				"PAYMENTS_ADDR=" + addr(p.Payments),
				"CONSUL_ADDR=" + addr(p.Consul),
			},
		}},
	}...))
}

// Stack is a running stack.
type Stack struct {
	opts  Options
	mu    sync.Mutex
	procs []*proc
}

type proc struct {
	svc  Service
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts every service, group by group, waiting for each to answer its health check.
// On failure everything started so far is stopped.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if o.RabbitMQ {
		if err := o.prepareRabbitMQ(); err != nil {
			return nil, err
		}
	}
	if o.EventsSecret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		o.EventsSecret = hex.EncodeToString(b[:])
	}
	groups := o.Services()
	if o.Jaeger {
		jaeger, err := o.jaegerService()
		if err != nil {
			return nil, err
		}
		groups = append([][]Service{{jaeger}}, groups...)
	}
	s := &Stack{opts: o}
	out := &lockedWriter{w: o.Out}
	for _, group := range groups {
		for _, svc := range group {
			if _, err := os.Stat(svc.Binary); err != nil {
				s.Stop(5 * time.Second)
				return nil, fmt.Errorf("%s: binary %s missing (make build): %w", svc.Name, svc.Binary, err)
			}
			p, err := start(svc, o.Env, out)
			if err != nil {
				s.Stop(5 * time.Second)
				return nil, err
			}
			s.mu.Lock()
			s.procs = append(s.procs, p)
			s.mu.Unlock()
		}
		for _, p := range s.procs[len(s.procs)-len(group):] {
			if err := waitHealthy(ctx, p, o.StartTimeout); err != nil {
				s.Stop(5 * time.Second)
				return nil, err
			}
		}
	}
	if o.Consul {
		// The gateway is up; it is ready once Consul's checks have passed and it has discovered
		// every service: each one answers its health check through the gateway.
		gw := s.procs[len(s.procs)-1]
		for _, svc := range []string{"users", "products", "orders", "payments"} {
			through := &proc{svc: Service{Name: "gateway → " + svc, Addr: gw.svc.Addr, Health: "/health/" + svc}, done: gw.done}
			if err := waitHealthy(ctx, through, o.StartTimeout); err != nil {
				s.Stop(5 * time.Second)
				return nil, err
			}
		}
	}
	return s, nil
}

func start(svc Service, env []string, out *lockedWriter) (*proc, error) {
	cmd := exec.Command(svc.Binary, svc.Args...)
	cmd.Env = append(append(os.Environ(), env...), svc.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", svc.Name, err)
	}
	p := &proc{svc: svc, cmd: cmd, done: make(chan struct{})}
	drained := make(chan struct{})
	go func() {
		prefixLines(pr, fmt.Sprintf("%-10s | ", svc.Name), out)
		close(drained)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		// done waits for the last line so that, once Stop returns, nothing writes to Out.
		<-drained
		close(p.done)
	}()
	return p, nil
}

func prefixLines(r io.Reader, prefix string, out *lockedWriter) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out.writeLine(prefix, sc.Bytes())
	}
	// A line too long for the scanner ends the loop; keep reading so the process never blocks
	// writing to a pipe nobody reads.
	_, _ = io.Copy(io.Discard, r)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(prefix string, line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, prefix)
	_, _ = l.w.Write(line)
	_, _ = io.WriteString(l.w, "\n")
}

func waitHealthy(ctx context.Context, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	url := "http://" + p.svc.Addr + p.svc.Health
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting: %v", p.svc.Name, p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy at %s after %s", p.svc.Name, url, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Exited returns the name of a service that has exited, or "".
func (s *Stack) Exited() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		select {
		case <-p.done:
			return p.svc.Name
		default:
		}
	}
	return ""
}

// Process returns the process of the named service, or nil.
func (s *Stack) Process(name string) *os.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.svc.Name == name {
			return p.cmd.Process
		}
	}
	return nil
}

// Stop sends SIGTERM to every process, gateway first (so no request reaches a stopped service),
// waits up to grace, then kills what is left.
func (s *Stack) Stop(grace time.Duration) error {
	s.mu.Lock()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		sig := p.svc.StopSignal
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within %s", p.svc.Name, grace))
		}
		if p.err != nil && !p.svc.AnyExitAfterStop && !strings.Contains(p.err.Error(), "signal: terminated") && !strings.Contains(p.err.Error(), "signal: interrupt") {
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) || ee.ExitCode() != 0 {
				errs = append(errs, fmt.Errorf("%s: %v", p.svc.Name, p.err))
			}
		}
	}
	return errors.Join(errs...)
}
