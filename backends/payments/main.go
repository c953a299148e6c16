// Command payments is the payments service: card charges with required idempotency keys,
// through a Provider (by default a deterministic simulator driven by Stripe's test cards). Only
// a card's brand and last four digits are stored.
//
//	payments [flags]    serve (default ADDR :3004)
//
// Run `payments -h` for the flags; each has an environment fallback. See docs/backends.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/config"
	"github.com/archway-gateway/archway/backends/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := config.NewFlagSet("payments")
	fs.SetOutput(stderr)
	common := config.RegisterCommon(fs, "payments", ":3004")
	jwt := auth.RegisterVerifierFlags(fs)
	if code, ok := fs.ParseCommandLine(args, ""); !ok {
		return code
	}
	if err := serve(ctx, common, jwt, stdout); err != nil {
		fmt.Fprintln(stderr, "payments:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c *config.Common, jwt *auth.VerifierSettings, stdout io.Writer) error {
	log, err := c.Logger(stdout, "payments")
	if err != nil {
		return err
	}
	stopTracing, err := c.StartTracing(ctx, "payments", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	verifier, err := jwt.NewVerifier(ctx, log)
	if err != nil {
		return err
	}
	store, err := OpenStore(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer store.Close()
	srv := server.New(server.ConfigFrom("payments", c, log, store.Ping))
	(&service{store: store, verifier: verifier, provider: Simulator{}, now: time.Now}).routes(srv)
	log.InfoContext(ctx, "payments service starting", "addr", c.Addr, "engine", string(store.db.Engine()), "provider", "simulator")
	return srv.ListenAndServe(ctx)
}
