// Command healthcheck is the container health check of every Archway image: it asks the
// process in its own container for its health endpoint and exits 0 when the answer is 200, 1
// otherwise. The images are distroless (no shell, no curl), so the Dockerfile's HEALTHCHECK, the
// compose healthchecks and anyone debugging a container run this instead.
//
//	healthcheck [URL]
//
// Without a URL it is http://127.0.0.1:<port>/health, where the port comes from the address the
// container's program listens on: ARCHWAY_LISTEN for the gateway, ADDR for a service, else the
// documented default of ARCHWAY_SERVICE (set by the image). HEALTHCHECK_URL overrides it all.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// defaultPorts are the documented listen ports (docs/backends.md); the gateway's is the plain
// listener of the routes file the image holds (deploy/compose/routes.yaml), which answers
// /health without redirecting it to HTTPS.
var defaultPorts = map[string]string{
	"gateway": "80", "users": "3001", "products": "3002", "orders": "3003", "payments": "3004",
}

func main() {
	url, err := target(os.Args[1:], os.Getenv)
	if err == nil {
		err = check(url, 3*time.Second)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// target returns the URL to probe.
func target(args []string, getenv func(string) string) (string, error) {
	if len(args) > 1 {
		return "", fmt.Errorf("usage: healthcheck [URL]")
	}
	if len(args) == 1 {
		return args[0], nil
	}
	if u := getenv("HEALTHCHECK_URL"); u != "" {
		return u, nil
	}
	service := getenv("ARCHWAY_SERVICE")
	listen := getenv("ADDR")
	if service == "gateway" {
		listen = getenv("ARCHWAY_LISTEN")
	}
	port := defaultPorts[service]
	if listen != "" {
		_, p, err := net.SplitHostPort(listen)
		if err != nil {
			return "", fmt.Errorf("listen address %q: %w", listen, err)
		}
		port = p
	}
	if port == "" {
		return "", fmt.Errorf("no URL given and ARCHWAY_SERVICE %q is not one of gateway, users, products, orders, payments", service)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/health", nil
}

func check(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
