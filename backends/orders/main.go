// Command orders is the orders service: orders priced from products with their stock reserved
// there, payment through payments, status changes, and a WebSocket that pushes every status
// change of a user's orders, whichever instance made it.
//
//	orders [flags]    serve (default ADDR :3003; instances may share one database)
//
// Run `orders -h` for the flags; each has an environment fallback. See docs/backends.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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

// settings are the orders service's own flags.
type settings struct {
	productsURL  string
	paymentsURL  string
	peerTimeout  time.Duration
	peerRetries  int
	currency     string
	pollInterval time.Duration
	pingInterval time.Duration
	broker       brokerSettings
}

func register(fs *config.FlagSet) *settings {
	s := &settings{}
	fs.StringVar(&s.productsURL, "products-url", "PRODUCTS_URL", "http://127.0.0.1:3002", "base URL of the products service")
	fs.StringVar(&s.paymentsURL, "payments-url", "PAYMENTS_URL", "http://127.0.0.1:3004", "base URL of the payments service")
	fs.DurationVar(&s.peerTimeout, "peer-timeout", "PEER_TIMEOUT", 5*time.Second,
		"timeout of one attempt of a call to products or payments")
	fs.IntVar(&s.peerRetries, "peer-retries", "PEER_RETRIES", 2,
		"extra attempts of an idempotent call to products or payments after a connection error, timeout, 502, 503 or 504")
	fs.StringVar(&s.currency, "currency", "CURRENCY", "USD", "ISO 4217 currency of prices and payments")
	fs.DurationVar(&s.pollInterval, "events-poll-interval", "EVENTS_POLL_INTERVAL", DefaultPollInterval,
		"without -amqp-url: how often the outbox is read for WebSocket pushes (changes made by another instance)")
	fs.DurationVar(&s.pingInterval, "ws-ping-interval", "WS_PING_INTERVAL", DefaultPingInterval,
		"WebSocket ping interval; a client silent for two intervals is disconnected")
	s.broker.register(fs)
	return s
}

func (s *settings) validate() error {
	if err := s.broker.validate(); err != nil {
		return err
	}
	switch {
	case s.peerTimeout <= 0:
		return errors.New("peer timeout must be positive")
	case s.peerRetries < 0 || s.peerRetries > 10:
		return fmt.Errorf("peer retries %d is outside 0..10", s.peerRetries)
	case len(s.currency) != 3 || strings.ToUpper(s.currency) != s.currency || strings.ContainsFunc(s.currency, func(r rune) bool { return r < 'A' || r > 'Z' }):
		return fmt.Errorf("currency %q must be three upper-case letters such as USD", s.currency)
	case s.pollInterval < 10*time.Millisecond || s.pollInterval > 10*time.Second:
		return fmt.Errorf("events poll interval %s is outside 10ms..10s", s.pollInterval)
	case s.pingInterval < time.Second:
		return fmt.Errorf("WebSocket ping interval %s is below 1s", s.pingInterval)
	}
	return nil
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := config.NewFlagSet("orders")
	fs.SetOutput(stderr)
	common := config.RegisterCommon(fs, "orders", ":3003")
	jwt := auth.RegisterVerifierFlags(fs)
	s := register(fs)
	if code, ok := fs.ParseCommandLine(args, ""); !ok {
		return code
	}
	if err := serve(ctx, common, jwt, s, stdout); err != nil {
		fmt.Fprintln(stderr, "orders:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c *config.Common, jwt *auth.VerifierSettings, s *settings, stdout io.Writer) error {
	if err := s.validate(); err != nil {
		return err
	}
	log, err := c.Logger(stdout, "orders")
	if err != nil {
		return err
	}
	stopTracing, err := c.StartTracing(ctx, "orders", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	var products, payments Peer
	if c.Consul != "" {
		// With Consul, peers are found by service name and follow their instances.
		if products, err = ConsulPeer(ctx, c.Consul, "products", log); err != nil {
			return err
		}
		if payments, err = ConsulPeer(ctx, c.Consul, "payments", log); err != nil {
			return err
		}
	} else {
		if products, err = ParsePeer("products", s.productsURL); err != nil {
			return err
		}
		if payments, err = ParsePeer("payments", s.paymentsURL); err != nil {
			return err
		}
	}
	verifier, err := jwt.NewVerifier(ctx, log)
	if err != nil {
		return err
	}
	store, err := OpenStore(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer store.Close()
	feed, err := NewFeed(ctx, store, log, s.pollInterval)
	if err != nil {
		return err
	}
	opts := ClientOptions{Timeout: s.peerTimeout, Retries: s.peerRetries}
	productsPeer := newPeerClient("products", products, opts)
	events := newEventTasks(store, feed, s.broker, productsPeer, log)
	srv := server.New(server.ConfigFrom("orders", c, log, store.Ping))
	(&service{store: store, verifier: verifier, feed: feed, currency: s.currency, log: log,
		products: &productsClient{productsPeer},
		payments: &paymentsClient{newPeerClient("payments", payments, opts)},
		ws:       wsSettings{PingInterval: s.pingInterval},
	}).routes(srv)
	events.registerMetrics(srv.Registry())
	feedCtx, stopFeed := context.WithCancel(ctx)
	feedDone := make(chan struct{})
	go func() { defer close(feedDone); feed.Run(feedCtx) }()
	defer func() { stopFeed(); <-feedDone }() // before the store closes
	stopEvents := events.start(ctx)
	defer stopEvents() // before the store closes
	log.InfoContext(ctx, "orders service starting", "addr", c.Addr, "engine", string(store.db.Engine()),
		"products", peerName(products), "payments", peerName(payments), "consul", c.Consul,
		"broker", s.broker.describe())
	return srv.ListenAndServe(ctx)
}

// peerName describes a peer for the start-up log line.
func peerName(p Peer) string {
	if sp, ok := p.(StaticPeer); ok {
		return string(sp)
	}
	return "consul"
}
