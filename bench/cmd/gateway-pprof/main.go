// Command gateway-pprof is the gateway as cmd gateway builds it (gateway/app: every policy), with
// net/http/pprof on a side listener, so the benchmark can profile the request path under load
// without a profiling endpoint in the product. It serves no admin API and ignores SIGHUP.
//
// Besides /debug/pprof/ (profiles, and /debug/pprof/trace for `go tool trace`), the side
// listener serves /debug/runtime-metrics: the scheduler's and the GC's counters from
// runtime/metrics as JSON, read before and after a load to see how long runnable goroutines
// waited for a thread (/sched/latencies:seconds) and how many GC cycles ran.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/gateway/app"
	"github.com/archway-gateway/archway/gateway/config"
)

func main() {
	configPath := flag.String("config", "routes.yaml", "configuration file")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "net/http/pprof listen address")
	slack := flag.String("timer-slack", envOr("ARCHWAY_TIMER_SLACK", app.DefaultTimerSlack.String()),
		"timer slack of the threads, as cmd gateway's flag (env ARCHWAY_TIMER_SLACK)")
	flag.Parse()
	d, err := time.ParseDuration(*slack)
	if err != nil || d < 0 {
		fmt.Fprintf(os.Stderr, "gateway-pprof: invalid -timer-slack %q\n", *slack)
		os.Exit(2)
	}
	if err := run(*configPath, *pprofAddr, d); err != nil {
		fmt.Fprintln(os.Stderr, "gateway-pprof:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func run(configPath, pprofAddr string, slack time.Duration) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The timer slack cmd gateway sets (its default, or what ARCHWAY_TIMER_SLACK says), so the
	// profiled process schedules like the shipped one.
	if err := app.SetTimerSlack(slack); err != nil {
		logger.Warn("timer slack not set", "error", err.Error())
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	gw, err := app.New(cfg, configPath, logger)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace.D())
		defer cancel()
		_ = gw.Shutdown(ctx)
	}()
	// Every listener of the configuration, as cmd gateway serves them: the HTTP/2 scenarios
	// profile a TLS listener (ALPN h2) or an h2c one.
	lns, err := gw.Listen()
	if err != nil {
		return err
	}
	http.HandleFunc("/debug/runtime-metrics", runtimeMetrics)
	go func() { _ = http.ListenAndServe(pprofAddr, nil) }()
	errc := make(chan error, 1)
	go func() { errc <- gw.ServeListeners(lns) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-errc:
		return err
	}
	return nil
}
