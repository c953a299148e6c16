// Command stack runs the whole Archway stack for `make run`: the reference services and the
// gateway in front of them, on embedded SQLite, with prefixed logs. Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/internal/stack"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the gateway and service binaries")
	data := flag.String("data", "data", "data directory (SQLite files, signing key); kept between runs")
	cfg := flag.String("config", "routes.yaml", "gateway configuration")
	consul := flag.Bool("consul", false, "run a Consul agent (bin/consul, built by make deps) first; services register with it")
	rabbitmq := flag.Bool("rabbitmq", false, "run a local rabbitmq-server (make deps installs it) first; order events go through it")
	jaeger := flag.Bool("jaeger", false, "run Jaeger (bin/jaeger, built by make deps) first and trace every request into it")
	flag.Parse()

	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return a
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	o := stack.Options{BinDir: abs(*bin), DataDir: abs(*data), Config: abs(*cfg), Ports: stack.DefaultPorts, Out: os.Stdout, Consul: *consul, RabbitMQ: *rabbitmq, Jaeger: *jaeger}
	s, err := stack.Start(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
	p := o.Ports
	fmt.Printf(`
  Archway is up. Ctrl-C stops everything.

    storefront   http://localhost:%[1]d/
    products     curl http://localhost:%[1]d/api/products
    health       curl http://localhost:%[1]d/health
    upstreams    curl http://127.0.0.1:%[2]d/upstreams
    metrics      curl http://127.0.0.1:%[2]d/metrics
    reload       curl -X POST http://127.0.0.1:%[2]d/reload

`, p.Gateway, p.Admin)
	if *consul {
		fmt.Printf("    consul       http://127.0.0.1:%d/ui/  (services: curl http://127.0.0.1:%[1]d/v1/catalog/services)\n\n", p.Consul)
	}

	if *jaeger {
		fmt.Printf("    jaeger       http://localhost:%[1]d/  (traces of every request; the access log's trace_id finds one:\n"+
			"                 curl http://localhost:%[1]d/api/traces/<trace_id>)\n\n", stack.JaegerUI)
	}

	if *rabbitmq {
		fmt.Printf("    rabbitmq     management UI http://127.0.0.1:%d/ (guest/guest), metrics http://127.0.0.1:%d/metrics\n\n",
			p.RabbitManagement, p.RabbitMetrics)
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\n  stopping...")
			if err := s.Stop(20 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "stack:", err)
				os.Exit(1)
			}
			return
		case <-tick.C:
			if name := s.Exited(); name != "" {
				fmt.Fprintf(os.Stderr, "stack: %s exited; stopping the stack\n", name)
				_ = s.Stop(20 * time.Second)
				os.Exit(1)
			}
		}
	}
}
