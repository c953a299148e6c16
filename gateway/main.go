// Command gateway is Archway: an API gateway and load balancer configured by routes.yaml.
//
//	gateway [-config routes.yaml]            serve
//	gateway validate [-config routes.yaml]   check a configuration, print every problem, exit 1 if any
//	gateway version                          print the version
//
// SIGHUP re-reads the configuration; SIGTERM and SIGINT stop accepting connections, let requests
// in flight finish within server.shutdown_grace, and exit 0.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/gateway/app"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/server"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "validate" || args[0] == "version" || args[0] == "serve") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("gateway "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", envOr("ARCHWAY_CONFIG", "routes.yaml"), "configuration file (env ARCHWAY_CONFIG)")
	logLevel := fs.String("log-level", envOr("ARCHWAY_LOG_LEVEL", "info"), "log level of the gateway's own log: debug, info, warn, error")
	timerSlack := fs.String("timer-slack", envOr("ARCHWAY_TIMER_SLACK", app.DefaultTimerSlack.String()),
		"timer slack of the gateway's threads (Linux): how late a timed sleep may end so the kernel can batch wake-ups; 0 keeps the system's (env ARCHWAY_TIMER_SLACK)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "archway", server.Version)
		return 0
	case "validate":
		cfg, err := config.Load(*configPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: valid (%d upstreams, %d routes, digest %s)\n", *configPath, len(cfg.Upstreams), len(cfg.Routes), cfg.Digest())
		return 0
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "invalid -log-level %q\n", *logLevel)
		return 2
	}
	slack, err := time.ParseDuration(*timerSlack)
	if err != nil || slack < 0 {
		fmt.Fprintf(stderr, "invalid -timer-slack %q: want a duration such as 1ms, or 0\n", *timerSlack)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Before the server starts its threads: they inherit the slack from the thread making them.
	if err := app.SetTimerSlack(slack); err != nil {
		logger.Warn("timer slack not set: the Go runtime's monitor thread wakes more often at moderate load", "error", err.Error())
	}
	if err := serve(ctx, *configPath, logger, stdout); err != nil {
		logger.Error("gateway stopped", "error", err.Error())
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, configPath string, logger *slog.Logger, stdout io.Writer) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	gw, err := app.New(cfg, configPath, logger)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	lns, err := gw.Listen()
	if err != nil {
		_ = gw.Shutdown(context.Background())
		return err
	}
	var adminSrv *http.Server
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			_ = gw.Shutdown(context.Background())
			return fmt.Errorf("admin listen: %w", err)
		}
		if t := gw.AdminTLSConfig(); t != nil {
			adminLn = tls.NewListener(adminLn, t)
		}
		adminSrv = &http.Server{
			Handler:           gw.Admin(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		}
	}

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)

	errc := make(chan error, 2)
	go func() { errc <- gw.ServeListeners(lns) }()
	if adminSrv != nil {
		go func() {
			if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	var addrs []string
	for _, ln := range lns {
		addrs = append(addrs, ln.Addr().String())
	}
	logger.Info("archway started", "listen", addrs, "admin", cfg.Admin.Listen, "config", configPath,
		"version", server.Version, "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	fmt.Fprintf(stdout, "archway listening on %s (admin %s)\n", strings.Join(addrs, ", "), cfg.Admin.Listen)

	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				_, _ = gw.Reload("signal") // the result is logged and in /config and metrics
				continue
			}
			logger.Info("shutting down", "signal", sig.String(), "grace", cfg.Server.ShutdownGrace.D().String())
			return shutdown(gw, adminSrv, gw.Config().Server.ShutdownGrace.D(), logger)
		case <-ctx.Done():
			return shutdown(gw, adminSrv, gw.Config().Server.ShutdownGrace.D(), logger)
		case err := <-errc:
			_ = shutdown(gw, adminSrv, time.Second, logger)
			return err
		}
	}
}

func shutdown(gw *app.Gateway, adminSrv *http.Server, grace time.Duration, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		logger.Warn("requests still running at the end of the shutdown grace period were cut off", "error", err.Error())
	}
	if adminSrv != nil {
		_ = adminSrv.Shutdown(ctx)
	}
	logger.Info("stopped")
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
