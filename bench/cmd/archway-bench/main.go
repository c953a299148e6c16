// Command archway-bench is the benchmark of Archway against nginx (make bench-nginx, make
// bench-quick) and the helpers it starts as separate, pinnable processes:
//
//	archway-bench run [flags]        the benchmark (see -h)
//	archway-bench upstream -listen A -listen B
//	                                 the fixed-response upstream (1 KiB GET, POST echo, WebSocket echo)
//	archway-bench openloop ...       fixed-rate load, latency from when each request was due (JSON)
//	archway-bench ws ...             WebSocket echo load (JSON)
//	archway-bench idle ...           hold idle keep-alive (-tls: TLS, -ws: WebSocket) connections until stdin closes
//	archway-bench closed ...         closed-loop load with failures split by kind (JSON)
//	archway-bench handshake ...      a new TLS connection per request (JSON)
//	archway-bench docs -report bench/results/<date>-report.md
//	                                 put a report into docs/benchmarks.md again
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/bench/fixed"
	"github.com/archway-gateway/archway/bench/loadgen"
	"github.com/archway-gateway/archway/bench/runner"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: archway-bench run|upstream|openloop|ws|idle [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		err = run(args)
	case "upstream":
		err = upstream(args)
	case "openloop":
		err = openloop(args)
	case "ws":
		err = ws(args)
	case "idle":
		err = idle(args)
	case "closed":
		err = closed(args)
	case "handshake":
		err = handshake(args)
	case "docs":
		err = docs(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "archway-bench:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	repo := fs.String("repo", ".", "repository root")
	bin := fs.String("bin", "bin", "directory of the gateway, products, archway-bench and gateway-pprof binaries")
	results := fs.String("results", "bench/results", "where results are written")
	runs := fs.Int("runs", 5, "counted runs per contender, after one warm-up")
	dur := fs.Duration("duration", 5*time.Second, "length of a counted run")
	warm := fs.Duration("warmup", 2*time.Second, "length of the warm-up run")
	scen := fs.String("scenarios", "", "comma-separated scenarios (default all): plain,ratelimit,cache,post,conns1000,latency,idle,websocket,storefront,reload")
	pls := fs.String("placements", "A,U", "A (proxy pinned alone on CPU 0), U (unpinned)")
	quick := fs.Bool("quick", false, "the everyday rough answer: placement A, the quick scenarios, 3 short runs")
	profile := fs.Bool("profile", false, "capture CPU and heap profiles of Archway in the plain and cache scenarios (and of the traced Archway in the tracing scenario)")
	docs := fs.String("docs", "", "Markdown file whose results section is replaced (docs/benchmarks.md)")
	before := fs.String("before", "", "a gateway binary built from an earlier commit, run as archway-before beside archway")
	parkOn := fs.Bool("park", false, "also run the gateway with server.idle_park_after: "+runner.ParkAfter+", as archway-park beside archway")
	var variants []runner.Variant
	fs.Func("archway-env", "NAME=K=V[,K=V...]: also run the gateway with these environment variables, as archway-NAME beside archway (repeatable; e.g. slack1ms=ARCHWAY_TIMER_SLACK=1ms)", func(s string) error {
		v, err := runner.ParseVariant(s)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(variants, func(o runner.Variant) bool { return o.Name == v.Name }) {
			return fmt.Errorf("-archway-env: %s given twice", v.Label())
		}
		variants = append(variants, v)
		return nil
	})
	_ = fs.Parse(args)
	cfg := runner.Config{Repo: *repo, Bin: *bin, Results: *results, Runs: *runs, Duration: *dur, Warmup: *warm,
		Placements: strings.Split(*pls, ","), Quick: *quick, Profile: *profile, Docs: *docs, Before: *before, Park: *parkOn,
		Variants: variants}
	if *scen != "" {
		cfg.Scenarios = strings.Split(*scen, ",")
	}
	if *quick {
		if *scen == "" {
			cfg.Scenarios = runner.QuickScenarios
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["runs"] {
			cfg.Runs = 3
		}
		if !set["duration"] {
			cfg.Duration = 2 * time.Second
		}
		if !set["warmup"] {
			cfg.Warmup = time.Second
		}
		if !set["placements"] {
			cfg.Placements = []string{"A"}
		}
	}
	for _, p := range []*string{&cfg.Repo, &cfg.Bin, &cfg.Results, &cfg.Before} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runner.Run(ctx, cfg)
}

func docs(args []string) error {
	fs := flag.NewFlagSet("docs", flag.ExitOnError)
	report := fs.String("report", "", "a report written by run: bench/results/<date>-report.md")
	page := fs.String("docs", "docs/benchmarks.md", "the page whose results section is replaced")
	_ = fs.Parse(args)
	md, err := os.ReadFile(*report)
	if err != nil {
		return err
	}
	date := strings.TrimSuffix(filepath.Base(*report), "-report.md")
	return runner.UpdateDocs(*page, string(md), filepath.Dir(*report), date)
}

func upstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	var addrs listFlag
	fs.Var(&addrs, "listen", "address to listen on (repeatable)")
	_ = fs.Parse(args)
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return fmt.Errorf("upstream: no -listen address")
	}
	return fixed.Serve(lns...)
}

type genOutput struct {
	Sent      int64   `json:"sent"`
	Completed int64   `json:"completed"`
	Errors    int64   `json:"errors"`
	Resumed   int64   `json:"resumed,omitempty"`
	ElapsedS  float64 `json:"elapsed_s"`
	P50       float64 `json:"p50"`
	P90       float64 `json:"p90"`
	P99       float64 `json:"p99"`
	P999      float64 `json:"p999"`
}

func printResult(res *loadgen.Result) error {
	return json.NewEncoder(os.Stdout).Encode(genOutput{
		Sent: res.Sent, Completed: res.Completed, Errors: res.Errors, ElapsedS: res.Elapsed.Seconds(),
		P50: res.Percentile(50), P90: res.Percentile(90), P99: res.Percentile(99), P999: res.Percentile(99.9),
	})
}

func openloop(args []string) error {
	fs := flag.NewFlagSet("openloop", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	path := fs.String("path", "/", "request path")
	rate := fs.Float64("rate", 1000, "requests per second")
	dur := fs.Duration("duration", 5*time.Second, "how long to send")
	conns := fs.Int("conns", 64, "connections")
	_ = fs.Parse(args)
	res, err := loadgen.OpenLoop(*addr, *path, *rate, *dur, *conns)
	if err != nil {
		return err
	}
	return printResult(res)
}

func ws(args []string) error {
	fs := flag.NewFlagSet("ws", flag.ExitOnError)
	url := fs.String("url", "", "ws://host:port/path")
	conns := fs.Int("conns", 50, "connections")
	size := fs.Int("size", 128, "message size, bytes")
	dur := fs.Duration("duration", 5*time.Second, "how long")
	_ = fs.Parse(args)
	res, err := loadgen.WSEcho(*url, *conns, *size, *dur)
	if err != nil {
		return err
	}
	return printResult(res)
}

func closed(args []string) error {
	fs := flag.NewFlagSet("closed", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	path := fs.String("path", "/", "request path")
	conns := fs.Int("conns", 64, "connections")
	dur := fs.Duration("duration", 5*time.Second, "how long")
	timeout := fs.Duration("timeout", 5*time.Second, "per request")
	_ = fs.Parse(args)
	res, err := loadgen.Closed(*addr, *path, *conns, *dur, *timeout)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Completed int64              `json:"completed"`
		ElapsedS  float64            `json:"elapsed_s"`
		Kinds     loadgen.ErrorKinds `json:"kinds"`
	}{res.Completed, res.Elapsed.Seconds(), res.Errors})
}

func handshake(args []string) error {
	fs := flag.NewFlagSet("handshake", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	path := fs.String("path", "/", "request path")
	conns := fs.Int("conns", 64, "connections at once")
	dur := fs.Duration("duration", 5*time.Second, "how long")
	resume := fs.Bool("resume", false, "share a client session cache: resumed handshakes")
	_ = fs.Parse(args)
	res, err := loadgen.Handshakes(*addr, *path, *conns, *dur, *resume)
	if err != nil {
		return err
	}
	out := genOutput{Sent: res.Sent, Completed: res.Completed, Errors: res.Errors, ElapsedS: res.Elapsed.Seconds(),
		P50: res.Percentile(50), P90: res.Percentile(90), P99: res.Percentile(99), P999: res.Percentile(99.9), Resumed: res.Resumed}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	path := fs.String("path", "/", "path of the one request made on each connection")
	n := fs.Int("n", 10000, "connections")
	useTLS := fs.Bool("tls", false, "TLS connections (the certificate is not verified)")
	ws := fs.Bool("ws", false, "upgrade each connection to a WebSocket")
	_ = fs.Parse(args)
	var o loadgen.IdleOptions
	if *useTLS {
		o.TLS = &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}} //nolint:gosec // loopback benchmark of our own certificate
	}
	o.WebSocket = *ws
	closeAll, err := loadgen.Idle(*addr, *path, *n, 32, o)
	if err != nil {
		return err
	}
	fmt.Println("READY", *n)
	_, _ = io.Copy(io.Discard, os.Stdin) // hold until the benchmark closes our stdin
	closeAll()
	return nil
}
