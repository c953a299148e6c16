package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/config"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"-jwt-secret", "short"}, "at least 32 bytes", 1},
		{[]string{"-log-level", "loud"}, "log level", 1},
		{[]string{"-products-url", "products:3002"}, "products URL", 1},
		{[]string{"-payments-url", "ftp://x"}, "payments URL", 1},
		{[]string{"-peer-timeout", "0s"}, "peer timeout", 1},
		{[]string{"-peer-retries", "11"}, "peer retries", 1},
		{[]string{"-currency", "usd"}, "currency", 1},
		{[]string{"-events-poll-interval", "1ms"}, "poll interval", 1},
		{[]string{"-ws-ping-interval", "10ms"}, "ping interval", 1},
		{[]string{"-events-secret", "short"}, "events secret is 5 bytes", 1},
		{[]string{"-events-secret", strings.Repeat("s", 32), "-pending-order-ttl", "10ms"}, "pending order TTL", 1},
		{[]string{"-peer-timeout", "soon"}, "invalid value", 2},
		{[]string{"-nope"}, "flag provided but not defined", 2},
		{[]string{"serve"}, "unexpected argument", 2},
	} {
		var errOut bytes.Buffer
		args := append([]string{"-addr", "127.0.0.1:0", "-database-url", filepath.Join(dir, "o.db")}, tc.args...)
		if code := run(context.Background(), args, io.Discard, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

func TestFlagsFallBackToTheEnvironment(t *testing.T) {
	env := map[string]string{"PRODUCTS_URL": "http://products.internal:3002", "PEER_RETRIES": "0",
		"EVENTS_POLL_INTERVAL": "500ms", "CURRENCY": "EUR"}
	fs := config.NewFlagSet("orders")
	fs.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s := register(fs)
	if err := fs.Parse([]string{"-peer-retries", "1"}); err != nil {
		t.Fatal(err)
	}
	if s.productsURL != env["PRODUCTS_URL"] || s.paymentsURL != "http://127.0.0.1:3004" || s.peerRetries != 1 ||
		s.pollInterval != 500*time.Millisecond || s.currency != "EUR" || s.pingInterval != DefaultPingInterval {
		t.Fatalf("settings %+v", *s)
	}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
}
