// Package runner runs the benchmark of Archway against its peers (nginx, HAProxy, Caddy): it
// starts the upstreams, the proxies on chosen CPUs, drives load through them alternately
// (A B C D A B C D ...), reads CPU time and memory of each proxy from /proc, counts its system
// calls and context switches with perf, and writes JSON results, a Markdown report and charts.
package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/bench/benchcert"
	"github.com/archway-gateway/archway/bench/haproxyconf"
	"github.com/archway-gateway/archway/bench/loadgen"
	"github.com/archway-gateway/archway/bench/stats"
)

// Config is one invocation of the benchmark.
type Config struct {
	Repo       string        // repository root (bench/routes.yaml lives under it)
	Bin        string        // gateway, products, archway-bench, gateway-pprof
	Results    string        // where results are written
	Runs       int           // counted runs per contender (after one warm-up)
	Duration   time.Duration // of a counted run
	Warmup     time.Duration // of the warm-up run
	Scenarios  []string      // names; empty means all
	Placements []string      // A, U
	Quick      bool          // the everyday rough answer: fewer contenders
	Profile    bool          // capture CPU and heap profiles of Archway (plain, cache; tracing: the traced one)
	Docs       string        // Markdown file whose results section is replaced; empty: none
	// Before is another gateway binary (a build of an earlier commit) run as the contender
	// "archway-before" beside "archway", alternating with it, for before/after figures.
	Before string
	// Park runs the same gateway with server.idle_park_after set (ParkAfter) as the contender
	// "archway-park" beside "archway", for parking's cost and savings.
	Park bool
	// Variants run this build with another environment each, as "archway-NAME" beside
	// "archway" (-archway-env).
	Variants []Variant
	Log      io.Writer
}

// ParkAfter is archway-park's server.idle_park_after.
const ParkAfter = "1s"

// placement is where the proxy and the load run.
type placement struct {
	name, desc string
	proxyCPU   string // taskset list for the proxy; empty: unpinned
	loadCPU    string // for the load generator and upstreams
	gomaxprocs int    // of Archway, the upstream and the Go load generators
	wrkThreads int
}

var placements = map[string]placement{
	"A": {name: "A", desc: "proxy alone on CPU 0 (taskset -c 0); load generator and upstreams on CPU 1", proxyCPU: "0", loadCPU: "1", gomaxprocs: 1, wrkThreads: 1},
	"U": {name: "U", desc: "unpinned: proxy, load generator and upstreams share both CPUs", gomaxprocs: 2, wrkThreads: 2},
}

// contender is one side of a comparison: a proxy and the path it is driven on.
type contender struct {
	label string // as reported
	proxy string // archway, archway-before, nginx, nginx-auto, haproxy, caddy
	path  string
}

type scenario struct {
	name, title string
	headline    string // the metric charted
	contenders  []contender
	products    bool // needs the products service
	idle        bool // memory scenario: the measurement is the load function's
	syscalls    bool // also count system calls and context switches per request (perf runs)
	accessLog   bool // every contender logs each request to a file
	tls         bool // every contender serves HTTPS with the benchmark's certificate
	h2          bool // the TLS listeners offer h2; a contender that does not negotiate it is left out, with a note
	h2c         bool // the plain listeners speak HTTP/2 with prior knowledge (h2c); the preflight speaks it too
	notes       []string
	load        func(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error)
	check       func(resp *http.Response) error
}

// everyProxy is Archway and every peer on path, less the proxies named in without.
func everyProxy(path string, without ...string) []contender {
	var out []contender
	for _, p := range append([]string{stats.Archway}, stats.Peers...) {
		if !slices.Contains(without, p) {
			out = append(out, contender{p, p, path})
		}
	}
	return out
}

// caddyNA is the note of a scenario Caddy cannot do with its standard build.
func caddyNA(what string) []string {
	return []string{"Caddy: n/a. Its standard build (the Debian package) has no " + what + "; plugins exist, but the comparison is of what each proxy ships."}
}

func scenarios(quick bool) []*scenario {
	plain := everyProxy("/plain")
	if !quick {
		plain = append(plain, contender{stats.NginxAuto, "nginx-auto", "/plain"})
	}
	limited := append(everyProxy("/limited", stats.Caddy), contender{stats.ArchwayNoLimit, stats.Archway, "/plain"})
	return []*scenario{
		{name: stats.ScenarioPlain, title: "GET through the proxy, 1 KiB body", headline: stats.RPS, contenders: plain, syscalls: true,
			load: wrkLoad(64, "")},
		{name: stats.ScenarioLimit, title: "GET with a rate limit that never rejects", headline: stats.RPS,
			contenders: limited, notes: caddyNA("rate limiter"), load: wrkLoad(64, "")},
		{name: stats.ScenarioCache, title: "cache hits (Archway's cache, nginx proxy_cache, HAProxy's cache)", headline: stats.RPS,
			contenders: everyProxy("/cached/item", stats.Caddy), notes: caddyNA("response cache"), load: wrkLoad(64, ""), check: expectHeader("X-Cache", "HIT")},
		{name: "post", title: "POST with a 4 KiB body (echoed)", headline: stats.RPS,
			contenders: everyProxy("/plain/echo"), load: wrkLoad(64, wrkPOSTScript(4096))},
		{name: "conns1000", title: "GET over 1 000 keep-alive connections", headline: stats.RPS,
			contenders: everyProxy("/plain"), load: wrkLoad(1000, "")},
		{name: stats.ScenarioLatency, title: "open-loop latency at half of nginx's maximum rate", headline: stats.P50,
			contenders: everyProxy("/plain"), syscalls: true, load: openLoopLoad},
		{name: stats.ScenarioAccessLog, title: "GET with every request logged to a file", headline: stats.RPS,
			contenders: everyProxy("/plain"), accessLog: true, load: accessLogLoad},
		{name: stats.ScenarioIdle, title: "10 000 idle keep-alive connections held open: memory", headline: stats.PSS,
			contenders: everyProxy("/plain"), idle: true, load: idleLoad},
		{name: stats.ScenarioIdleWS, title: "10 000 idle WebSocket connections held open: memory", headline: stats.PSS,
			contenders: everyProxy("/ws"), idle: true, load: idleWSLoad},
		{name: "websocket", title: "WebSocket echo, 50 connections, 128-byte messages", headline: stats.MsgsPerSec,
			contenders: everyProxy("/ws"), load: wsLoad},
		{name: "storefront", title: "storefront mix through the real products service", headline: stats.RPS,
			contenders: everyProxy("/api/products?limit=20"), products: true, load: wrkLoad(64, wrkMixScript(storefrontPaths))},
		{name: stats.ScenarioReload, title: "a configuration reload every 100 ms under load", headline: stats.RPS,
			contenders: everyProxy("/plain"), load: reloadLoad},
		{name: stats.ScenarioTLS, title: "HTTPS keep-alive GET, 1 KiB body (ECDSA P-256, TLS 1.3)", headline: stats.RPS,
			contenders: everyProxy("/plain"), tls: true, load: wrkLoad(64, "")},
		{name: stats.ScenarioTLSFull, title: "full TLS handshakes: a new connection per request", headline: stats.Handshakes,
			contenders: everyProxy("/plain"), tls: true, load: handshakeLoad(false)},
		{name: stats.ScenarioTLSResume, title: "resumed TLS handshakes: a new connection per request, session tickets", headline: stats.Handshakes,
			contenders: everyProxy("/plain"), tls: true, load: handshakeLoad(true)},
		{name: stats.ScenarioH2, title: "HTTP/2 over TLS: 16 connections × 100 concurrent streams (h2load)", headline: stats.RPS,
			contenders: everyProxy("/plain"), tls: true, h2: true, load: h2Load(16, 100, false)},
		{name: stats.ScenarioH2H1, title: "HTTP/1.1 over TLS, 64 connections (h2load --h1): the h2 scenario's reference", headline: stats.RPS,
			contenders: everyProxy("/plain"), tls: true, load: h2Load(64, 1, true)},
		{name: stats.ScenarioH2C, title: "HTTP/2 without TLS (h2c, prior knowledge): 16 connections × 100 concurrent streams (h2load)", headline: stats.RPS,
			contenders: everyProxy("/plain"), h2c: true, load: h2Load(16, 100, false)},
		{name: stats.ScenarioTLSIdle, title: "10 000 idle TLS keep-alive connections held open: memory", headline: stats.PSS,
			contenders: everyProxy("/plain"), tls: true, idle: true, load: idleLoad},
		{name: stats.ScenarioTracing, title: "GET at one fixed rate with tracing on (every request sampled, OTLP to Jaeger) against tracing off", headline: stats.CPUPerReq,
			contenders: []contender{{stats.Archway, stats.Archway, "/plain"}, {stats.ArchwayTraced, stats.ArchwayTraced, "/plain"}},
			notes:      tracingNotes(), load: tracingLoad},
	}
}

// QuickScenarios are what bench-quick runs: the targets that move when the hot path changes,
// and what tracing every request costs (issue 14 asks for it in bench-quick).
var QuickScenarios = []string{stats.ScenarioPlain, stats.ScenarioLimit, stats.ScenarioCache, stats.ScenarioLatency, stats.ScenarioTracing}

var storefrontPaths = []string{
	"/api/products?limit=20", "/api/products/1", "/api/products/2", "/api/products?category=Electronics",
	"/api/products/3", "/api/products?limit=20&page=2", "/api/products/4", "/api/products?search=laptop",
	"/api/products/5", "/api/products?category=Furniture", "/api/products/6", "/api/products/7",
	"/api/products?limit=5", "/api/products/8", "/api/products/9", "/api/products/10",
}

// Runner holds the state of one invocation.
type Runner struct {
	cfg     Config
	dir     string // scratch: configs, pid files, caches
	date    string
	env     map[string]string
	ports   map[string]int
	nginx   string
	haproxy string
	caddy   string
	h2load  string
	perf    bool               // perf stat can count system calls here
	cert    benchcert.Files    // the certificate every TLS contender serves
	maxRate map[string]float64 // nginx's median req/s in the plain scenario, per placement
	results map[string]*Result
	logf    func(format string, args ...any)
	profile []profileSummary
	jaeger  *jaeger // the tracing scenario's collector, while it runs
	// tracingRate is the open-loop rate of the tracing scenario in the placement running.
	tracingRate float64
}

// Result is one scenario's output file.
type Result struct {
	Scenario   string            `json:"scenario"`
	Title      string            `json:"title"`
	Date       string            `json:"date"`
	Quick      bool              `json:"quick"`
	Machine    Machine           `json:"machine"`
	Placements map[string]string `json:"placements"`
	GOMAXPROCS map[string]int    `json:"gomaxprocs"`
	Runs       []stats.Run       `json:"runs"`
	Summary    stats.Table       `json:"summary"`
	Headline   string            `json:"headline"`
	NginxConf  string            `json:"nginx_conf"`
	Notes      []string          `json:"notes,omitempty"`
	// Syscalls holds the perf runs' counts per request (stats.Syscalls, stats.CtxSwitches).
	Syscalls stats.Table `json:"syscalls,omitempty"`
}

// Machine describes where the numbers came from.
type Machine struct {
	CPUs     int    `json:"cpus"`
	Model    string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Nginx    string `json:"nginx"`
	HAProxy  string `json:"haproxy"`
	Caddy    string `json:"caddy"`
	Wrk      string `json:"wrk"`
	RunCount int    `json:"counted_runs"`
	RunSecs  string `json:"run_duration"`
}

// Run executes the benchmark.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	raiseFileLimit()
	r := &Runner{cfg: cfg, date: time.Now().UTC().Format("2006-01-02"), maxRate: map[string]float64{}, results: map[string]*Result{}}
	r.logf = func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	var err error
	if r.nginx, err = lookNginx(); err != nil {
		return err
	}
	for _, tool := range []string{"wrk", "taskset", "haproxy", "caddy", "h2load"} {
		p, err := lookTool(tool)
		if err != nil {
			return err
		}
		switch tool {
		case "haproxy":
			r.haproxy = p
		case "caddy":
			r.caddy = p
		case "h2load":
			r.h2load = p
		}
	}
	r.perf = perfWorks()
	if !r.perf {
		r.logf("perf stat cannot count raw_syscalls:sys_enter here: system calls per request are not measured")
	}
	if r.dir, err = os.MkdirTemp("", "archway-bench-"); err != nil {
		return err
	}
	// nginx started as root runs its workers as nobody: they must reach the cache and temp dirs.
	if err := os.Chmod(r.dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(r.dir)
	if r.cert, err = benchcert.Write(r.dir); err != nil {
		return err
	}
	// nginx's workers (nobody) read the key after the master (root) opened it: the master
	// reads it, so 0600 root-owned is enough.

	want := map[string]bool{}
	for _, s := range cfg.Scenarios {
		want[s] = true
	}
	var todo []*scenario
	for _, s := range scenarios(cfg.Quick) {
		if len(want) == 0 || want[s.name] {
			addContenders(s, cfg)
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return fmt.Errorf("no scenario matches %v", cfg.Scenarios)
	}
	for _, pn := range cfg.Placements {
		pl, ok := placements[pn]
		if !ok {
			return fmt.Errorf("unknown placement %q (A or U)", pn)
		}
		if err := r.runPlacement(ctx, pl, todo); err != nil {
			return err
		}
	}
	return r.write()
}

// lookTool finds a program the benchmark runs, in PATH or the sbin directories Debian puts
// daemons in.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (run `make deps`)", name)
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func lookNginx() (string, error) {
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	return "", errors.New("nginx is not installed (run `make deps`)")
}

// fileLimit is the soft limit on open files (after raiseFileLimit).
func fileLimit() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	return int(min(l.Cur, 1<<30))
}

// idleCount is how many idle connections the memory scenarios hold: 10 000, or fewer when the
// open-file limit lets HAProxy (two descriptors per connection) take no more, so that every
// contender holds the same number.
func idleCount() int {
	n := idleConns
	if lim := fileLimit(); lim > 0 {
		n = min(n, haproxyconf.MaxConnFor(lim)/100*100-100)
	}
	return n
}

// idleWSCount is how many idle WebSockets the memory scenario holds: each takes two
// connections in the proxy (client and upstream), so 10 000 when the open-file limit lets
// every contender take 20 000 connections, else half of idleCount.
func idleWSCount() int {
	if lim := fileLimit(); lim > 0 && haproxyconf.MaxConnFor(lim) < 2*idleConns+200 {
		return idleCount() / 2 / 100 * 100
	}
	return idleConns
}

// raiseFileLimit lifts the soft limit on open files to the hard one, for this process and,
// because it is set explicitly, for every program it starts (10 000 idle connections).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func (r *Runner) runPlacement(ctx context.Context, pl placement, todo []*scenario) error {
	names := []string{stats.Archway, "admin", stats.Nginx, stats.NginxAuto, stats.HAProxy, stats.Caddy, "caddy-admin", "up1", "up2", "pprof", stats.ArchwayBefore, "admin-before", stats.ArchwayPark, "admin-park",
		stats.ArchwayTraced, "admin-traced", "jaeger-otlp-http", "jaeger-otlp-grpc", "jaeger-query", "jaeger-query-grpc"}
	for _, v := range r.cfg.Variants {
		names = append(names, v.Label(), "admin-"+v.Label())
	}
	ports, err := freePorts(len(names))
	if err != nil {
		return err
	}
	r.ports = map[string]int{}
	for i, n := range names {
		r.ports[n] = ports[i]
	}
	prodPorts, err := freePorts(2)
	if err != nil {
		return err
	}
	r.env = map[string]string{
		"BENCH_LISTEN":     fmt.Sprintf("127.0.0.1:%d", r.ports["archway"]),
		"BENCH_ADMIN":      fmt.Sprintf("127.0.0.1:%d", r.ports["admin"]),
		"BENCH_UPSTREAM_1": fmt.Sprintf("127.0.0.1:%d", r.ports["up1"]),
		"BENCH_UPSTREAM_2": fmt.Sprintf("127.0.0.1:%d", r.ports["up2"]),
		"BENCH_PRODUCTS_1": fmt.Sprintf("127.0.0.1:%d", prodPorts[0]),
		"BENCH_PRODUCTS_2": fmt.Sprintf("127.0.0.1:%d", prodPorts[1]),
	}
	r.logf("placement %s: %s (GOMAXPROCS=%d)", pl.name, pl.desc, pl.gomaxprocs)
	up, err := start("upstream", pl.loadCPU, []string{fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs)}, r.bin("archway-bench"), "upstream",
		"-listen", r.env["BENCH_UPSTREAM_1"], "-listen", r.env["BENCH_UPSTREAM_2"])
	if err != nil {
		return err
	}
	defer up.stop(5 * time.Second)
	if err := r.waitHTTP(ctx, "http://"+r.env["BENCH_UPSTREAM_1"]+"/plain", up, 10*time.Second); err != nil {
		return err
	}
	var products []*process
	defer func() {
		for _, p := range products {
			p.stop(5 * time.Second)
		}
	}()
	for _, s := range todo {
		if s.products && products == nil {
			db := filepath.Join(r.dir, "products.db")
			for _, addr := range []string{r.env["BENCH_PRODUCTS_1"], r.env["BENCH_PRODUCTS_2"]} {
				p, err := start("products", pl.loadCPU, []string{"ADDR=" + addr, "DATABASE_URL=" + db, "LOG_LEVEL=warn",
					"JWT_SECRET=archway-bench-secret-not-used-for-anything-0123456789", fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs)},
					r.bin("products"))
				if err != nil {
					return err
				}
				products = append(products, p)
				if err := r.waitHTTP(ctx, "http://"+addr+"/health", p, 60*time.Second); err != nil {
					return err
				}
			}
		}
		if err := r.runScenario(ctx, pl, s); err != nil {
			return fmt.Errorf("scenario %s, placement %s: %w", s.name, pl.name, err)
		}
		if r.cfg.Profile && pl.name == "A" && (s.name == stats.ScenarioPlain || s.name == stats.ScenarioCache || s.name == stats.ScenarioTracing) {
			if err := r.captureProfile(ctx, pl, s); err != nil {
				return fmt.Errorf("profile %s: %w", s.name, err)
			}
		}
	}
	return nil
}

func (r *Runner) bin(name string) string { return filepath.Join(r.cfg.Bin, name) }

func (r *Runner) runScenario(ctx context.Context, pl placement, s *scenario) error {
	res := r.results[s.name]
	if res == nil {
		res = &Result{Scenario: s.name, Title: s.title, Date: r.date, Quick: r.cfg.Quick, Machine: r.machine(),
			Placements: map[string]string{}, GOMAXPROCS: map[string]int{}, Headline: s.headline,
			NginxConf: r.date + "-nginx.conf"}
		r.results[s.name] = res
	}
	res.Placements[pl.name] = pl.desc
	res.GOMAXPROCS[pl.name] = pl.gomaxprocs
	notes := s.notes
	held := idleCount()
	if s.name == stats.ScenarioIdleWS {
		held = idleWSCount()
	}
	if s.idle && held < idleConns {
		notes = append(notes, fmt.Sprintf("Each contender held %d connections, not %d: the open-file limit here (%d) lets HAProxy, which reserves two descriptors per connection (a WebSocket takes two connections), take no more. The per-connection figure (kib_per_conn) is comparable.",
			held, idleConns, fileLimit()))
	}
	for _, n := range notes {
		if !slices.Contains(res.Notes, n) {
			res.Notes = append(res.Notes, n)
		}
	}

	if slices.ContainsFunc(s.contenders, func(c contender) bool { return c.proxy == stats.ArchwayTraced }) {
		j, err := r.startJaeger(ctx, pl)
		if errors.Is(err, errNoJaeger) {
			// Only this scenario needs it: the others are measured, this one says why not.
			r.logf("%s: not measured: %v", s.name, err)
			res.Notes = append(res.Notes, fmt.Sprintf("%s: not measured: %v.", pl.name, err))
			return nil
		}
		if err != nil {
			return err
		}
		r.jaeger = j
		// Deferred before the proxies' stop, so it runs after it: they flush to a live collector.
		defer func() { j.stop(); r.jaeger = nil }()
	}
	proxies := map[string]*proxyProc{}
	defer func() {
		for _, px := range proxies {
			px.stop()
		}
	}()
	for _, c := range s.contenders {
		if proxies[c.proxy] != nil {
			continue
		}
		px, err := r.startProxy(ctx, pl, c.proxy, s)
		if err != nil {
			return err
		}
		proxies[c.proxy] = px
	}
	if s.h2 {
		// Archway's HTTP/2 arrives with issue 13; until its TLS listener negotiates h2, the
		// scenario runs against nginx alone and says so.
		kept := s.contenders[:0:0]
		for _, c := range s.contenders {
			if r.speaksH2(proxies[c.proxy]) {
				kept = append(kept, c)
				continue
			}
			n := c.label + ": not measured, its TLS listener does not negotiate h2 (ALPN) yet."
			if !slices.Contains(res.Notes, n) {
				res.Notes = append(res.Notes, n)
			}
		}
		s = &scenario{name: s.name, title: s.title, headline: s.headline, contenders: kept, tls: s.tls, h2: s.h2, load: s.load}
		if len(kept) == 0 {
			return nil
		}
	}
	for _, c := range s.contenders {
		if err := r.preflight(proxies[c.proxy], c, s); err != nil {
			return err
		}
	}
	if s.name == stats.ScenarioTracing {
		// Both contenders serve one fixed rate, half of what the traced one manages flat out:
		// CPU per request is compared at equal throughput (see tracingLoad).
		m, err := wrkLoad(64, "")(r, pl, proxies[stats.ArchwayTraced], contender{stats.ArchwayTraced, stats.ArchwayTraced, "/plain"}, r.cfg.Duration)
		if err != nil {
			return err
		}
		r.tracingRate = math.Round(m[stats.RPS] / 2)
		res.Notes = append(res.Notes, fmt.Sprintf("%s: archway-traced served %.0f req/s flat out (wrk, 64 connections); both contenders were driven at half of that, %.0f req/s, open loop.",
			pl.name, m[stats.RPS], r.tracingRate))
	}
	if s.name == stats.ScenarioLatency && r.maxRate[pl.name] == 0 {
		// The plain scenario did not run in this invocation: measure nginx's maximum first.
		m, err := wrkLoad(64, "")(r, pl, proxies[stats.Nginx], contender{stats.Nginx, stats.Nginx, "/plain"}, r.cfg.Duration)
		if err != nil {
			return err
		}
		r.maxRate[pl.name] = m[stats.RPS]
		res.Notes = append(res.Notes, fmt.Sprintf("%s: nginx's maximum measured for this scenario alone: %.0f req/s", pl.name, m[stats.RPS]))
	}

	for i := 0; i <= r.cfg.Runs; i++ {
		for _, c := range s.contenders {
			d := r.cfg.Duration
			if i == 0 {
				d = r.cfg.Warmup
			}
			px := proxies[c.proxy]
			if s.idle {
				var err error
				if px, err = startAlone(proxies, c.proxy, func() (*proxyProc, error) { return r.startProxy(ctx, pl, c.proxy, s) }); err != nil {
					return err
				}
			}
			m, err := r.measure(pl, px, c, s, d)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", c.label, i, err)
			}
			run := stats.Run{Contender: c.label, Placement: pl.name, Index: i, Warmup: i == 0, Metrics: m}
			res.Runs = append(res.Runs, run)
			r.logf("%-10s %s %-16s run %d%s: %s", s.name, pl.name, c.label, i, map[bool]string{true: " (warm-up)"}[i == 0], brief(m))
			if px.proc.exited() {
				return fmt.Errorf("%s exited: %s", px.kind, lastLines(px.proc.out.String(), 10))
			}
		}
	}
	if s.syscalls && r.perf {
		for _, c := range s.contenders {
			m, err := r.countSyscalls(pl, proxies[c.proxy], c, s)
			if err != nil {
				return fmt.Errorf("%s system calls: %w", c.label, err)
			}
			res.Runs = append(res.Runs, stats.Run{Contender: c.label, Placement: pl.name, Index: 1, Kind: "perf", Metrics: m})
			r.logf("%-10s %s %-16s perf: %s", s.name, pl.name, c.label, brief(m))
		}
		res.Syscalls = stats.AggregateKind(res.Runs, "perf")
	}
	res.Summary = stats.Aggregate(res.Runs)
	if s.name == stats.ScenarioPlain {
		r.maxRate[pl.name] = res.Summary.Get(pl.name, stats.Nginx, stats.RPS).Median
	}
	return nil
}

func brief(m map[string]float64) string {
	var parts []string
	for _, k := range []string{stats.RPS, stats.MsgsPerSec, stats.Handshakes, stats.P50, stats.P99, stats.P999, stats.Errors, stats.ErrorsSeen, stats.CPUPerReq, stats.ProxyCPU, stats.PeakRSS, stats.PSS, stats.RSS, "kib_per_conn", stats.Syscalls, stats.CtxSwitches, stats.VolSwitches, stats.InvolSwitches, stats.LogLines, stats.Resumed, stats.Steal, stats.Others, stats.Reloads, stats.SpansExported, stats.SpansDropped} {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+stats.Num(v))
		}
	}
	return strings.Join(parts, " ")
}

// measure runs one load and reads the proxy's CPU time, peak memory and the machine's steal
// time around it.
func (r *Runner) measure(pl placement, px *proxyProc, c contender, s *scenario, d time.Duration) (map[string]float64, error) {
	pid := px.proc.pid()
	resetPeak(pid)
	// Everything the benchmark runs: the proxy, the upstreams and services, and this process
	// with its waited-for children (wrk, the load generators). The rest of the machine's busy
	// time is other people's work: logged per run as others_cpu_pct.
	ours := func() int64 { return cpuTicks(os.Getpid()) }
	tot0, steal0, busy0 := cpuTimes()
	ours0 := ours()
	cpu0 := cpuTicks(pid)
	t0 := time.Now()
	m, err := s.load(r, pl, px, c, d)
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0).Seconds()
	cpu := float64(cpuTicks(pid)-cpu0) / clockTick
	tot1, steal1, busy1 := cpuTimes()
	m[stats.Others] = math.Max(0, float64((busy1-busy0)-(ours()-ours0))/clockTick/wall*100)
	if n := m[stats.Requests]; n > 0 && cpu > 0 {
		m[stats.CPUPerReq] = cpu * 1e6 / n
		m[stats.Capacity] = n / cpu
	}
	m[stats.ProxyCPU] = cpu / wall * 100
	m[stats.PeakRSS] = float64(memKiB(pid, "VmHWM")) / 1024
	if tot1 > tot0 {
		m[stats.Steal] = float64(steal1-steal0) / float64(tot1-tot0) * 100
	}
	return m, nil
}

// preflight checks that a contender answers what the scenario expects before it is measured, so
// a misconfigured proxy cannot win by answering errors quickly.
func (r *Runner) preflight(px *proxyProc, c contender, s *scenario) error {
	if s.name == "websocket" || s.name == stats.ScenarioIdleWS {
		return nil // the load itself fails on a bad handshake
	}
	client := r.clientFor(px, 5*time.Second)
	defer client.CloseIdleConnections()
	var resp *http.Response
	var err error
	for range 2 { // the second answer of a cache scenario is a hit
		if s.name == "post" {
			resp, err = client.Post(px.url(c.path), "application/octet-stream", strings.NewReader(strings.Repeat("a", 4096)))
		} else {
			resp, err = client.Get(px.url(c.path))
		}
		if err != nil {
			return fmt.Errorf("%s preflight: %w", c.label, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s preflight: GET %s: %s", c.label, c.path, resp.Status)
	}
	if s.h2c && resp.ProtoMajor != 2 {
		return fmt.Errorf("%s preflight: GET %s over %s, want HTTP/2 (h2c)", c.label, c.path, resp.Proto)
	}
	if s.check != nil {
		if err := s.check(resp); err != nil {
			return fmt.Errorf("%s preflight: %w", c.label, err)
		}
	}
	// Header parity: every contender forwards and echoes a request id.
	if c.path != "/api/products?limit=20" && resp.Header.Get("X-Request-ID") == "" {
		return fmt.Errorf("%s preflight: no X-Request-ID on the response", c.label)
	}
	return nil
}

func expectHeader(name, value string) func(*http.Response) error {
	return func(resp *http.Response) error {
		if got := resp.Header.Get(name); got != value {
			return fmt.Errorf("%s: %q, want %q", name, got, value)
		}
		return nil
	}
}

// wrkLoad drives the contender with wrk (closed loop, conns connections) for d.
func wrkLoad(conns int, script string) func(*Runner, placement, *proxyProc, contender, time.Duration) (map[string]float64, error) {
	return func(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
		w, err := r.wrk(pl, px.url(c.path), conns, script, d)
		if err != nil {
			return nil, err
		}
		return wrkMetrics(w), nil
	}
}

func wrkMetrics(w wrkResult) map[string]float64 {
	return map[string]float64{
		stats.RPS: w.rps(), stats.Requests: float64(w.Requests), stats.Errors: float64(w.Errors),
		stats.P50: w.P50, stats.P90: w.P90, stats.P99: w.P99, stats.P999: w.P999,
	}
}

func (r *Runner) wrk(pl placement, target string, conns int, script string, d time.Duration) (wrkResult, error) {
	if script == "" {
		script = wrkDone
	}
	sf := filepath.Join(r.dir, fmt.Sprintf("wrk-%x.lua", hash(script)))
	if err := writeFile(sf, []byte(script)); err != nil {
		return wrkResult{}, err
	}
	secs := max(1, int(math.Round(d.Seconds())))
	args := []string{"-t", strconv.Itoa(pl.wrkThreads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", secs),
		"--latency", "--timeout", "5s", "-s", sf, target}
	cmd := "wrk"
	if pl.loadCPU != "" {
		args = append([]string{"-c", pl.loadCPU, "wrk"}, args...)
		cmd = "taskset"
	}
	out, err := exec.Command(cmd, args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// genResult is what the Go load generators (archway-bench openloop/ws/closed/handshake) print.
type genResult struct {
	Sent, Completed, Errors int64
	ElapsedS                float64 `json:"elapsed_s"`
	P50, P90, P99, P999     float64
	Kinds                   loadgen.ErrorKinds `json:"kinds"`
	Resumed                 int64              `json:"resumed"`
}

func (r *Runner) generator(pl placement, args ...string) (genResult, error) {
	p, err := start("load", pl.loadCPU, []string{fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs)}, r.bin("archway-bench"), args...)
	if err != nil {
		return genResult{}, err
	}
	<-p.done
	var g genResult
	out := p.out.String()
	if p.cmd.ProcessState.ExitCode() != 0 {
		return g, fmt.Errorf("archway-bench %s: %s", args[0], lastLines(out, 10))
	}
	i := strings.LastIndexByte(strings.TrimSpace(out), '\n')
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)[i+1:]), &g); err != nil {
		return g, fmt.Errorf("archway-bench %s output: %w\n%s", args[0], err, lastLines(out, 10))
	}
	return g, nil
}

// openLoopLoad sends at half of nginx's maximum rate in this placement, whatever the proxy.
func openLoopLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	rate := math.Round(r.maxRate[pl.name] / 2)
	g, err := r.generator(pl, "openloop", "-addr", px.addr, "-path", c.path, "-rate", strconv.FormatFloat(rate, 'f', 0, 64),
		"-duration", d.String(), "-conns", "64")
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		stats.Rate: rate, stats.RPS: float64(g.Completed) / g.ElapsedS, stats.Requests: float64(g.Completed), stats.Errors: float64(g.Errors),
		stats.P50: g.P50, stats.P90: g.P90, stats.P99: g.P99, stats.P999: g.P999,
	}, nil
}

func wsLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	g, err := r.generator(pl, "ws", "-url", "ws://"+px.addr+c.path, "-conns", "50", "-size", "128", "-duration", d.String())
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		stats.MsgsPerSec: float64(g.Completed) / g.ElapsedS, stats.Requests: float64(g.Completed), stats.Errors: float64(g.Errors),
		stats.P50: g.P50, stats.P90: g.P90, stats.P99: g.P99, stats.P999: g.P999,
	}, nil
}

// accessLogLoad is wrk with every request logged: after the load it waits out the longest
// flush interval (1 s: nginx flush=1s, Archway's access_log.flush) and counts the lines the
// run added, so a contender that loses lines shows it (log_lines_per_req below 1).
func accessLogLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	if px.sink != nil {
		px.sink.flush()
	}
	before := countLines(px.accessLog)
	m, err := wrkLoad(64, "")(r, pl, px, c, d)
	if err != nil {
		return nil, err
	}
	time.Sleep(1500 * time.Millisecond)
	if px.sink != nil {
		px.sink.flush()
	}
	if n := m[stats.Requests]; n > 0 {
		m[stats.LogLines] = float64(countLines(px.accessLog)-before) / n
	}
	return m, nil
}

// handshakeLoad opens a new TLS connection for every request (64 at once), without (full
// handshakes) or with (resumed) a client session cache.
func handshakeLoad(resume bool) func(*Runner, placement, *proxyProc, contender, time.Duration) (map[string]float64, error) {
	return func(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
		g, err := r.generator(pl, "handshake", "-addr", px.addr, "-path", c.path, "-conns", "64", "-duration", d.String(),
			"-resume="+strconv.FormatBool(resume))
		if err != nil {
			return nil, err
		}
		m := map[string]float64{
			stats.Handshakes: float64(g.Completed) / g.ElapsedS, stats.RPS: float64(g.Completed) / g.ElapsedS,
			stats.Requests: float64(g.Completed), stats.Errors: float64(g.Errors),
			stats.P50: g.P50, stats.P90: g.P90, stats.P99: g.P99, stats.P999: g.P999,
		}
		if g.Completed > 0 {
			m[stats.Resumed] = float64(g.Resumed) / float64(g.Completed) * 100
		}
		if resume && g.Completed > 0 && g.Resumed < g.Completed/2 {
			return nil, fmt.Errorf("%s resumed %d of %d handshakes: session resumption does not work", c.label, g.Resumed, g.Completed)
		}
		return m, nil
	}
}

// startAlone stops every proxy of the scenario and starts kind's afresh (through start), as the
// one proxy running, and records it in proxies. The memory scenarios measure this way: from a
// fresh process, because a Go heap does not shrink back at once and a second 10 000 connections
// on the same process would measure the first; and alone, because PSS divides a file's pages
// among the processes mapping it, so a sibling contender of the same binary (archway-park, an
// -archway-env variant) left running would halve the measured one's binary pages.
func startAlone(proxies map[string]*proxyProc, kind string, start func() (*proxyProc, error)) (*proxyProc, error) {
	for _, px := range proxies {
		px.stop()
	}
	px, err := start()
	if err != nil {
		return nil, err
	}
	proxies[kind] = px
	return px, nil
}

// idleConns is how many idle connections the memory scenarios hold.
const idleConns = 10000

// idleLoad opens 10 000 keep-alive connections (one request each; over TLS in the TLS
// scenario), holds them idle and reads the proxy's resident memory while they are open.
func idleLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	var extra []string
	if px.tls {
		extra = []string{"-tls"}
	}
	return r.holdIdle(pl, px, c, d, extra...)
}

// idleWSLoad holds 10 000 upgraded WebSocket connections idle.
func idleWSLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	return r.holdIdle(pl, px, c, d, "-ws")
}

func (r *Runner) holdIdle(pl placement, px *proxyProc, c contender, d time.Duration, extra ...string) (map[string]float64, error) {
	pid := px.proc.pid()
	before := float64(pssKiB(pid)) / 1024
	n := idleCount()
	if slices.Contains(extra, "-ws") {
		n = idleWSCount()
	}
	args := append([]string{r.bin("archway-bench"), "idle", "-addr", px.addr, "-path", c.path, "-n", strconv.Itoa(n)}, extra...)
	cmd := exec.Command(args[0], args[1:]...)
	if pl.loadCPU != "" {
		cmd = exec.Command("taskset", append([]string{"-c", pl.loadCPU}, args...)...)
	}
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY") {
		return nil, fmt.Errorf("idle connections: %q %v %s", line, err, stderr.String())
	}
	if waitsForParking(c.label, slices.Contains(extra, "-ws")) {
		// Measured once every connection is parked and the memory they gave back has been
		// returned to the OS (archway_parking_memory_releases_total), as it is on a gateway
		// whose connections have gone quiet.
		if err := waitParked(px.admin, n, 90*time.Second); err != nil {
			return nil, err
		}
	}
	time.Sleep(min(d, 2*time.Second)) // let the proxy settle with the connections open
	pss := float64(pssKiB(pid)) / 1024
	rss := float64(memKiB(pid, "VmRSS")) / 1024
	return map[string]float64{stats.PSS: pss, stats.RSS: rss, "pss_before_mib": before, stats.Conns: float64(n),
		"kib_per_conn": (pss - before) * 1024 / float64(n), "kib_per_conn_total": pss * 1024 / float64(n), stats.Requests: float64(n)}, nil
}

// waitsForParking reports whether an idle scenario measures the contender label only once its
// connections have parked: this build's keep-alive connections do, by default after
// server.idle_park_after's 5 s and archway-park's after ParkAfter (so do its -archway-env
// variants); archway-before is an older build, which may not park, and is measured as it holds
// them. An upgraded WebSocket is a tunnel, which never parks, so there every contender is
// measured as it holds them (waiting would time out and end the run).
func waitsForParking(label string, webSocket bool) bool {
	if webSocket || label == stats.ArchwayBefore {
		return false
	}
	return label == stats.Archway || strings.HasPrefix(label, stats.Archway+"-")
}

// reloadLoad drives the proxy with the classifying closed-loop generator (archway-bench
// closed, 64 connections) while its configuration is changed and reloaded every 100 ms:
// Archway through its admin API (POST /reload), nginx with nginx -s reload, HAProxy with
// SIGUSR2 to its master, Caddy through its admin API (POST /load). Every reload applies a real
// change (a response header's value). Failures are split by kind (loadgen.ErrorKinds): a
// reused keep-alive connection closed before any response byte is retried on a new
// connection, as browsers and HTTP libraries do, and counted apart from what a client sees.
func reloadLoad(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
	src, err := r.routesFor(&scenario{name: stats.ScenarioReload, tls: px.tls}, px.dir)
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	reloads := 0
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for gen := 1; ; gen++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
			}
			variant := bytes.Replace(src, []byte("  - name: plain\n"),
				[]byte(fmt.Sprintf("  - name: plain\n    headers: { response: { set: { X-Config-Generation: \"%d\" } } }\n", gen)), 1)
			conf, err := px.render(variant)
			if err == nil {
				if err = writeFile(px.conf, conf); err == nil {
					err = px.reload()
				}
			}
			if err != nil {
				done <- err
				return
			}
			reloads++
		}
	}()
	g, gerr := r.generator(pl, "closed", "-addr", px.addr, "-path", c.path, "-conns", "64", "-duration", d.String(), "-timeout", "5s")
	close(stop)
	if err := <-done; err != nil {
		return nil, err
	}
	if gerr != nil {
		return nil, gerr
	}
	k := g.Kinds
	return map[string]float64{
		stats.RPS: float64(g.Completed) / g.ElapsedS, stats.Requests: float64(g.Completed),
		stats.Errors: float64(k.Seen() + k.ReusedClosed), stats.ErrorsSeen: float64(k.Seen()),
		stats.ErrConnect: float64(k.Connect), stats.ErrReusedClosed: float64(k.ReusedClosed), stats.ErrRead: float64(k.Read),
		stats.ErrTimeout: float64(k.Timeout), stats.ErrStatus: float64(k.Status),
		stats.Reloads: float64(reloads),
	}, nil
}

// perfWorks reports whether perf stat can count system calls and context switches here (it
// needs the raw_syscalls tracepoint: tracefs mounted, perf_event_paranoid allowing it).
func perfWorks() bool {
	out, err := exec.Command("perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches", "true").CombinedOutput()
	return err == nil && bytes.Contains(out, []byte("raw_syscalls:sys_enter")) && !bytes.Contains(out, []byte("<not"))
}

// countSyscalls runs the scenario's load once more on its own, with perf stat attached to
// every process of the proxy for the middle of the run (from 0.5 s after the start to 0.5 s
// before the end), and divides the counts by the requests served in that window.
func (r *Runner) countSyscalls(pl placement, px *proxyProc, c contender, s *scenario) (map[string]float64, error) {
	d := max(r.cfg.Duration, 2*time.Second)
	type result struct {
		m   map[string]float64
		err error
	}
	ch := make(chan result, 1)
	go func() { m, err := s.load(r, pl, px, c, d); ch <- result{m, err} }()
	time.Sleep(500 * time.Millisecond)
	window := d - time.Second
	var pids []string
	for _, p := range procTree(px.proc.pid()) {
		pids = append(pids, strconv.Itoa(p))
	}
	vol0, invol0 := switchCounts(procTree(px.proc.pid()))
	out, perr := exec.Command("perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches",
		"-p", strings.Join(pids, ","), "--", "sleep", strconv.FormatFloat(window.Seconds(), 'f', 3, 64)).CombinedOutput()
	vol1, invol1 := switchCounts(procTree(px.proc.pid()))
	res := <-ch
	if res.err != nil {
		return nil, res.err
	}
	if perr != nil {
		return nil, fmt.Errorf("perf stat: %w: %s", perr, out)
	}
	counts, err := parsePerfStat(string(out))
	if err != nil {
		return nil, err
	}
	reqs := res.m[stats.RPS] * window.Seconds()
	if reqs <= 0 {
		return nil, fmt.Errorf("no request served while perf counted")
	}
	return map[string]float64{
		stats.Syscalls:      counts["raw_syscalls:sys_enter"] / reqs,
		stats.CtxSwitches:   counts["context-switches"] / reqs,
		stats.VolSwitches:   float64(vol1-vol0) / reqs,
		stats.InvolSwitches: float64(invol1-invol0) / reqs,
		stats.RPS:           res.m[stats.RPS],
	}, nil
}

// parsePerfStat reads perf stat -x, output: value,unit,event,... per line.
func parsePerfStat(out string) (map[string]float64, error) {
	counts := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		counts[f[2]] = v
	}
	for _, ev := range []string{"raw_syscalls:sys_enter", "context-switches"} {
		if _, ok := counts[ev]; !ok {
			return nil, fmt.Errorf("perf stat counted no %s:\n%s", ev, out)
		}
	}
	return counts, nil
}

func (r *Runner) machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), RunCount: r.cfg.Runs, RunSecs: r.cfg.Duration.String()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.Model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if out, err := exec.Command(r.nginx, "-v").CombinedOutput(); err == nil {
		m.Nginx = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version:"))
	}
	if out, err := exec.Command(r.haproxy, "-v").CombinedOutput(); err == nil {
		if f := strings.Fields(string(out)); len(f) > 2 {
			m.HAProxy = f[2]
		}
	}
	if out, err := exec.Command(r.caddy, "version").CombinedOutput(); err == nil {
		m.Caddy = strings.TrimSpace(string(out))
	}
	if out, _ := exec.Command("wrk", "-v").CombinedOutput(); len(out) > 0 {
		m.Wrk = strings.Fields(string(out))[1]
	}
	return m
}
