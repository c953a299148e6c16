package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// Events pushed by orders without a broker: only a signed body is taken, what can never be
// applied is 422 (orders skips it), and an event pushed again is applied once.
func TestPushedOrderEvents(t *testing.T) {
	ctx := context.Background()
	secret := []byte(strings.Repeat("k", ev.MinSecretLen))
	st := openStore(t, filepath.Join(t.TempDir(), "products.db"))
	inv := int64(100)
	p, err := st.Create(ctx, ProductInput{Name: "Lamp", Price: 1000, Category: "home", Inventory: &inv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(ctx, p.ID, "ord-a", "7", 10); err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Service: "products", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Health: st.Ping, MaxBodyBytes: 64 << 10})
	srv.Handle(http.MethodPost, ev.PushPath, pushHandler(st, secret))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String() + ev.PushPath

	cancelled := cancelledEvent(t, 1, "ord-a")
	paid := envelope(t, ev.OrderPaid, 1, "ord-a", ev.Version)
	future := envelope(t, ev.OrderCancelled, 1, "ord-a", ev.Version+1)
	signed := func(b []byte) []string { return []string{ev.SignatureHeader, ev.Sign(secret, b)} }
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		status  int
		stock   int64
	}{
		{"unsigned", cancelled, nil, 401, 90},
		{"signed with another secret", cancelled, []string{ev.SignatureHeader, ev.Sign([]byte(strings.Repeat("x", 32)), cancelled)}, 401, 90},
		{"signature of another body", cancelled, signed(paid), 401, 90},
		{"not JSON", []byte("{"), signed([]byte("{")), 422, 90},
		{"unknown version", future, signed(future), 422, 90},
		{"a type products does not act on", paid, signed(paid), 204, 90},
		{"cancelled", cancelled, signed(cancelled), 204, 100},
		{"the same event again", cancelled, signed(cancelled), 204, 100},
	} {
		r := call(t, "POST", url, "", string(tc.body), tc.headers...)
		got, err := st.Get(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != tc.status || got.Inventory != tc.stock {
			t.Errorf("%s: %d %s, stock %d; want %d and stock %d", tc.name, r.status, r.raw, got.Inventory, tc.status, tc.stock)
		}
		if r.status == 401 && !strings.Contains(r.raw, ev.SignatureHeader) {
			t.Errorf("%s: 401 body %q does not name the header", tc.name, r.raw)
		}
	}
}

func envelope(t *testing.T, typ ev.Type, orderID int64, ref string, version int) []byte {
	t.Helper()
	data, _ := json.Marshal(ev.OrderChange{OrderID: orderID, Ref: ref, Status: "paid"})
	body, err := json.Marshal(ev.Envelope{ID: ev.NewID(), Type: typ, Version: version, OrderID: orderID,
		OccurredAt: time.Now().UTC(), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return body
}
