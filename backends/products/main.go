// Command products is the products service: the catalog (public, cacheable reads; admin writes)
// and the stock reservations the orders service makes.
//
//	products [flags]                 serve (default ADDR :3002); seeds an empty database
//	products seed [-reset=false]     restore the original catalog (make seed)
//
// Run `products -h` for the flags; each has an environment fallback. See docs/backends.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/config"
	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "seed" {
		return seed(ctx, args[1:], stdout, stderr)
	}
	fs := config.NewFlagSet("products")
	fs.SetOutput(stderr)
	common := config.RegisterCommon(fs, "products", ":3002")
	jwt := auth.RegisterVerifierFlags(fs)
	var broker brokerSettings
	broker.register(fs)
	if code, ok := fs.ParseCommandLine(args, "seed"); !ok {
		return code
	}
	if err := serve(ctx, common, jwt, broker, stdout); err != nil {
		fmt.Fprintln(stderr, "products:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c *config.Common, jwt *auth.VerifierSettings, broker brokerSettings, stdout io.Writer) error {
	if err := broker.validate(); err != nil {
		return err
	}
	log, err := c.Logger(stdout, "products")
	if err != nil {
		return err
	}
	stopTracing, err := c.StartTracing(ctx, "products", log)
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
	catalog, err := Catalog()
	if err != nil {
		return err
	}
	n, err := store.Seed(ctx, catalog, false)
	if err != nil {
		return err
	}
	if n > 0 {
		log.InfoContext(ctx, "seeded an empty catalog", "products", n)
	}
	srv := server.New(server.ConfigFrom("products", c, log, store.Ping))
	(&service{store: store, verifier: verifier}).routes(srv)
	if broker.pushSecret != "" {
		srv.Handle(http.MethodPost, ev.PushPath, pushHandler(store, []byte(broker.pushSecret)))
	}
	if broker.url != "" {
		consumer, err := newReleaseConsumer(store, broker, log)
		if err != nil {
			return err
		}
		cctx, stopConsumer := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); consumer.Run(cctx) }()
		defer func() { stopConsumer(); <-done }() // before the store closes
	}
	log.InfoContext(ctx, "products service starting", "addr", c.Addr, "engine", string(store.db.Engine()), "broker", describeBroker(broker.url), "events_push", broker.pushSecret != "")
	return srv.ListenAndServe(ctx)
}

func seed(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := config.NewFlagSet("products seed")
	fs.SetOutput(stderr)
	common := config.RegisterCommon(fs, "products", ":3002")
	reset := fs.Bool("reset", true, "delete every product and reservation first, so the catalog gets ids 1..10 again")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "products seed:", err)
		return 2
	}
	store, err := OpenStore(ctx, common.DatabaseURL)
	if err != nil {
		fmt.Fprintln(stderr, "products seed:", err)
		return 1
	}
	defer store.Close()
	catalog, err := Catalog()
	if err != nil {
		fmt.Fprintln(stderr, "products seed:", err)
		return 1
	}
	n, err := store.Seed(ctx, catalog, *reset)
	if err != nil {
		fmt.Fprintln(stderr, "products seed:", err)
		return 1
	}
	fmt.Fprintf(stdout, "products seed: inserted %d products into %s\n", n, store.db.Engine())
	return 0
}

func describeBroker(url string) string {
	if url == "" {
		return "none"
	}
	return ev.Redact(url)
}
