package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// countingProvider wraps the simulator, counting the charges that reach it. While fail is set
// it errors instead (an unreachable provider); delay slows every charge down, so concurrent
// identical requests overlap.
type countingProvider struct {
	charges atomic.Int32
	fail    atomic.Bool
	delay   time.Duration
}

func (p *countingProvider) Charge(ctx context.Context, c Charge) (Outcome, error) {
	time.Sleep(p.delay)
	if p.fail.Load() {
		return Outcome{}, errors.New("provider unreachable")
	}
	p.charges.Add(1)
	return Simulator{}.Charge(ctx, c)
}

type harness struct {
	url                    string
	provider               *countingProvider
	customer, other, admin string
}

// startPayments serves the payments endpoints on a real loopback socket over a fresh database.
func startPayments(t *testing.T, url string, delay time.Duration) *harness {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: issuer.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	if url == "" {
		url = filepath.Join(t.TempDir(), "payments.db")
	}
	store := openStore(t, url)
	srv := server.New(server.Config{Service: "payments", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Health: store.Ping})
	provider := &countingProvider{delay: delay}
	(&service{store: store, verifier: verifier, provider: provider, now: time.Now}).routes(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	h := &harness{url: "http://" + ln.Addr().String(), provider: provider}
	h.admin, _, _ = issuer.Issue(1, "root@example.com", auth.RoleAdmin)
	h.customer, _, _ = issuer.Issue(2, "ana@example.com", auth.RoleCustomer)
	h.other, _, _ = issuer.Issue(3, "bo@example.com", auth.RoleCustomer)
	return h
}

type reply struct {
	status int
	header http.Header
	raw    string
}

func (r reply) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.raw), &m); err != nil {
		t.Fatalf("body %q: %v", r.raw, err)
	}
	return m
}

func call(t *testing.T, method, url, token, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err) // may run in a goroutine
		return reply{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(raw)}
}

func paymentBody(orderID int, amount, number string) string {
	return fmt.Sprintf(`{"order_id":%d,"amount":%s,"currency":"usd","card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":"123"}}`,
		orderID, amount, number, time.Now().Year()+2)
}

func TestCreatePaymentValidation(t *testing.T) {
	h := startPayments(t, "", 0)
	year := time.Now().Year()
	card := func(fields string) string {
		return `{"order_id":1,"amount":10,"currency":"USD","card":{` + fields + `}}`
	}
	valid := fmt.Sprintf(`"number":"4242 4242 4242 4242","exp_month":12,"exp_year":%d,"cvc":"123"`, year+1)
	for i, tc := range []struct {
		name, token, key, body string
		want                   int
		field                  string
	}{
		{"no token", "", "k", paymentBody(1, "10", "4242424242424242"), 401, ""},
		{"no idempotency key", "customer", "", paymentBody(1, "10", "4242424242424242"), 400, "Idempotency-Key"},
		{"idempotency key with a space", "customer", "a b", paymentBody(1, "10", "4242424242424242"), 400, "Idempotency-Key"},
		{"idempotency key too long", "customer", strings.Repeat("k", 256), paymentBody(1, "10", "4242424242424242"), 400, "Idempotency-Key"},
		{"no body", "customer", "k", "", 400, "body"},
		{"missing order id", "customer", "k", `{"amount":10,"currency":"USD","card":{` + valid + `}}`, 400, "order_id"},
		{"zero amount", "customer", "k", paymentBody(1, "0", "4242424242424242"), 400, "amount"},
		{"amount with 3 decimals", "customer", "k", paymentBody(1, "1.005", "4242424242424242"), 400, "amount"},
		{"amount as a string", "customer", "k", `{"order_id":1,"amount":"10","currency":"USD","card":{` + valid + `}}`, 400, "amount"},
		{"bad currency", "customer", "k", `{"order_id":1,"amount":10,"currency":"dollars","card":{` + valid + `}}`, 400, "currency"},
		{"missing card", "customer", "k", `{"order_id":1,"amount":10,"currency":"USD"}`, 400, "card"},
		{"card number fails Luhn", "customer", "k", paymentBody(1, "10", "4242424242424241"), 400, "card.number"},
		{"card number with letters", "customer", "k", paymentBody(1, "10", "4242abcd42424242"), 400, "card.number"},
		{"card number too short", "customer", "k", paymentBody(1, "10", "42424242"), 400, "card.number"},
		{"card number not a string", "customer", "k", card(`"number":4242424242424242,"exp_month":1,"exp_year":2099,"cvc":"123"`), 400, "card.number"},
		{"month 13", "customer", "k", card(fmt.Sprintf(`"number":"4242424242424242","exp_month":13,"exp_year":%d,"cvc":"123"`, year+1)), 400, "card.exp_month"},
		{"expired last year", "customer", "k", card(fmt.Sprintf(`"number":"4242424242424242","exp_month":12,"exp_year":%d,"cvc":"123"`, year-1)), 400, "card.exp_year"},
		{"missing cvc", "customer", "k", card(fmt.Sprintf(`"number":"4242424242424242","exp_month":12,"exp_year":%d`, year+1)), 400, "card.cvc"},
		{"cvc of 5 digits", "customer", "k", card(fmt.Sprintf(`"number":"4242424242424242","exp_month":12,"exp_year":%d,"cvc":"12345"`, year+1)), 400, "card.cvc"},
		{"approved", "customer", "ok-1", card(valid), 201, ""},
		{"two-digit year", "customer", "ok-2", card(fmt.Sprintf(`"number":"4242424242424242","exp_month":12,"exp_year":%d,"cvc":"123"`, (year+1)%100)), 201, ""},
		{"valid through the current month", "customer", "ok-3", card(fmt.Sprintf(`"number":"4242424242424242","exp_month":%d,"exp_year":%d,"cvc":"123"`, int(time.Now().UTC().Month()), year)), 201, ""},
		{"admin may pay too", "admin", "ok-4", card(valid), 201, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := map[string]string{"customer": h.customer, "admin": h.admin}[tc.token]
			var headers []string
			if tc.key != "" {
				headers = []string{"Idempotency-Key", tc.key}
			}
			r := call(t, "POST", h.url+"/payments", token, tc.body, headers...)
			if r.status != tc.want {
				t.Fatalf("case %d: status %d; want %d: %s", i, r.status, tc.want, r.raw)
			}
			body := r.object(t)
			if tc.field != "" && body["field"] != tc.field {
				t.Fatalf("field = %v; want %s: %s", body["field"], tc.field, r.raw)
			}
			if r.status >= 400 && body["request_id"] == nil {
				t.Fatalf("error without request_id: %s", r.raw)
			}
		})
	}
	if n := h.provider.charges.Load(); n != 4 {
		t.Fatalf("%d charges reached the provider; want 4 (invalid requests never do)", n)
	}
}

func TestPaymentOutcomesAndStoredCard(t *testing.T) {
	h := startPayments(t, "", 0)
	for _, tc := range []struct {
		number, status string
		reason         any
	}{
		{"4242 4242 4242 4242", "succeeded", nil},
		{"4000 0000 0000 0002", "declined", "generic_decline"},
		{"4000-0000-0000-9995", "declined", "insufficient_funds"},
	} {
		r := call(t, "POST", h.url+"/payments", h.customer, paymentBody(5, "1299.99", tc.number), "Idempotency-Key", "pay-"+strings.NewReplacer(" ", "", "-", "").Replace(tc.number))
		if r.status != 201 {
			t.Fatalf("%s: %d %s", tc.number, r.status, r.raw)
		}
		p := r.object(t)
		last4 := strings.ReplaceAll(tc.number, " ", "")
		last4 = last4[len(last4)-4:]
		if p["status"] != tc.status || p["decline_reason"] != tc.reason || p["card_last4"] != last4 || p["amount"] != 1299.99 ||
			p["currency"] != "USD" || p["order_id"] != float64(5) || p["card_brand"] != "visa" || p["created_at"] == nil {
			t.Fatalf("%s: %s", tc.number, r.raw)
		}
		if !strings.Contains(r.raw, `"amount":1299.99`) || strings.Contains(r.raw, "4242424242424242") || strings.Contains(r.raw, `"cvc"`) {
			t.Fatalf("response leaks card data or renders money inexactly: %s", r.raw)
		}
		if r.header.Get(HeaderReplayed) != "" || r.header.Get("Location") != fmt.Sprintf("/payments/%v", p["id"]) {
			t.Fatalf("headers: %v", r.header)
		}
	}
}

func TestIdempotency(t *testing.T) {
	h := startPayments(t, "", 0)
	body := paymentBody(9, "50", "4242424242424242")
	first := call(t, "POST", h.url+"/payments", h.customer, body, "Idempotency-Key", "order-9-a")
	again := call(t, "POST", h.url+"/payments", h.customer, body, "Idempotency-Key", "order-9-a")
	if first.status != 201 || again.status != 201 || first.raw != again.raw || again.header.Get(HeaderReplayed) != "true" {
		t.Fatalf("replay: %d %s / %d %s %v", first.status, first.raw, again.status, again.raw, again.header)
	}
	for name, other := range map[string]string{
		"another amount": paymentBody(9, "51", "4242424242424242"),
		"another card":   paymentBody(9, "50", "5555555555554444"),
		"another order":  paymentBody(10, "50", "4242424242424242"),
	} {
		if r := call(t, "POST", h.url+"/payments", h.customer, other, "Idempotency-Key", "order-9-a"); r.status != 422 {
			t.Fatalf("%s under the same key: %d %s; want 422", name, r.status, r.raw)
		}
	}
	// Keys belong to their user: another user's identical key is its own payment.
	if r := call(t, "POST", h.url+"/payments", h.other, body, "Idempotency-Key", "order-9-a"); r.status != 201 || r.header.Get(HeaderReplayed) != "" || r.object(t)["id"] == first.object(t)["id"] {
		t.Fatalf("other user's key: %d %s", r.status, r.raw)
	}
	if n := h.provider.charges.Load(); n != 2 {
		t.Fatalf("%d charges; want 2", n)
	}
}

func TestConcurrentIdenticalRequestsChargeOnce(t *testing.T) {
	// The provider is slow, so every request arrives while the first is charging.
	h := startPayments(t, "", 150*time.Millisecond)
	body := paymentBody(3, "20.00", "4242424242424242")
	const n = 8
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			replies[i] = call(t, "POST", h.url+"/payments", h.customer, body, "Idempotency-Key", "same-key")
		})
	}
	wg.Wait()
	replayed := 0
	for _, r := range replies {
		if r.status != 201 || r.object(t)["status"] != "succeeded" || r.object(t)["id"] != replies[0].object(t)["id"] {
			t.Fatalf("reply %d %s; want the one stored payment", r.status, r.raw)
		}
		if r.header.Get(HeaderReplayed) == "true" {
			replayed++
		}
	}
	if c := h.provider.charges.Load(); c != 1 || replayed != n-1 {
		t.Fatalf("%d charges, %d replays; want exactly 1 charge and %d replays", c, replayed, n-1)
	}
}

func TestProviderFailureIsRetriedUnderTheSameKey(t *testing.T) {
	h := startPayments(t, "", 0)
	body := paymentBody(4, "10", "4242424242424242")
	h.provider.fail.Store(true)
	if r := call(t, "POST", h.url+"/payments", h.customer, body, "Idempotency-Key", "k"); r.status != 502 {
		t.Fatalf("provider down: %d %s; want 502", r.status, r.raw)
	}
	h.provider.fail.Store(false)
	r := call(t, "POST", h.url+"/payments", h.customer, body, "Idempotency-Key", "k")
	if r.status != 201 || r.object(t)["status"] != "succeeded" {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	if again := call(t, "POST", h.url+"/payments", h.customer, body, "Idempotency-Key", "k"); again.header.Get(HeaderReplayed) != "true" || again.raw != r.raw {
		t.Fatalf("after the retry: %d %s", again.status, again.raw)
	}
	if c := h.provider.charges.Load(); c != 1 {
		t.Fatalf("%d charges; want 1", c)
	}
}

func TestGetPayment(t *testing.T) {
	h := startPayments(t, "", 0)
	created := call(t, "POST", h.url+"/payments", h.customer, paymentBody(1, "10", "4000000000009995"), "Idempotency-Key", "k").object(t)
	path := fmt.Sprintf("/payments/%v", created["id"])
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"owner", path, h.customer, 200},
		{"admin", path, h.admin, 200},
		{"another customer", path, h.other, 404},
		{"no token", path, "", 401},
		{"missing", "/payments/999", h.customer, 404},
		{"bad id", "/payments/abc", h.customer, 400},
	} {
		r := call(t, "GET", h.url+tc.path, tc.token, "")
		if r.status != tc.want {
			t.Fatalf("%s: %d %s; want %d", tc.name, r.status, r.raw, tc.want)
		}
		if r.status == 200 {
			if p := r.object(t); p["status"] != "declined" || p["decline_reason"] != "insufficient_funds" || p["card_last4"] != "9995" {
				t.Fatalf("%s: %s", tc.name, r.raw)
			}
		}
	}
}

func TestMetricsAndHealth(t *testing.T) {
	h := startPayments(t, "", 0)
	call(t, "GET", h.url+"/payments/7", h.customer, "")
	m := call(t, "GET", h.url+"/metrics", "", "")
	if !strings.Contains(m.raw, `route="/payments/{id}"`) || !strings.Contains(m.raw, `service="payments"`) {
		t.Fatalf("metrics lack the payments route:\n%s", m.raw)
	}
	if r := call(t, "GET", h.url+"/health", "", ""); r.status != 200 || !strings.Contains(r.raw, `"service":"payments"`) {
		t.Fatalf("health %d %s", r.status, r.raw)
	}
}
