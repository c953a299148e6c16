// Command gateway-pprof is the gateway as cmd gateway builds it (gateway/app: every policy), with
// net/http/pprof on a side listener, so the benchmark can profile the request path under load
// without a profiling endpoint in the product. It serves no admin API and ignores SIGHUP.
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

	"github.com/archway-gateway/archway/gateway/app"
	"github.com/archway-gateway/archway/gateway/config"
)

func main() {
	configPath := flag.String("config", "routes.yaml", "configuration file")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "net/http/pprof listen address")
	flag.Parse()
	if err := run(*configPath, *pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway-pprof:", err)
		os.Exit(1)
	}
}

func run(configPath, pprofAddr string) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
