package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
)

// Fifty customers order the last ten units at once, through two orders instances sharing a
// database, with products on the same engine: exactly ten orders exist, the stock ends at 0.
func TestConcurrentOrdersForScarceStock(t *testing.T) {
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		s := startStack(t, stackOptions{ordersDB: newURL(t), productsDB: newURL(t), paymentsDB: newURL(t), instances: 2})
		s.setInventory(t, 6, 10)
		const n = 50
		var created, short atomic.Int32
		ids := make(chan float64, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				token, _, _ := s.issuer.Issue(int64(100+i), fmt.Sprintf("c%d@example.com", i), "customer")
				r := s.order(t, i%2, token, `{"items":[{"product_id":6,"quantity":1}],"shipping_address":"x"}`)
				switch r.status {
				case 201:
					created.Add(1)
					ids <- r.object(t)["id"].(float64)
				case 409:
					short.Add(1)
				default:
					t.Errorf("order %d: %d %s", i, r.status, r.raw)
				}
			})
		}
		wg.Wait()
		close(ids)
		if created.Load() != 10 || short.Load() != 40 {
			t.Fatalf("%d created, %d insufficient; want 10 and 40", created.Load(), short.Load())
		}
		if inv := s.inventory(t, 6); inv != 0 {
			t.Fatalf("inventory %v; want 0", inv)
		}
		// No order lost: every 201 is stored, exactly once.
		seen := map[float64]bool{}
		for id := range ids {
			if seen[id] {
				t.Fatalf("order id %v returned twice", id)
			}
			seen[id] = true
			o, err := s.orders[0].store.Get(t.Context(), int64(id))
			if err != nil || o.Status != StatusPending || len(o.Items) != 1 || o.Items[0].Quantity != 1 {
				t.Fatalf("order %v: %+v, %v", id, o, err)
			}
		}
		var stored int
		if err := s.orders[1].store.db.QueryRow(t.Context(), "SELECT COUNT(*) FROM orders").Scan(&stored); err != nil || stored != 10 {
			t.Fatalf("%d orders stored, %v; want 10", stored, err)
		}
	})
}

func TestPay(t *testing.T) {
	s := startStack(t, stackOptions{})
	o := s.orders[0].url
	id := s.placeOrder(t, twoLaptopsAndHeadphones)
	pay := fmt.Sprintf("%s/orders/%d/pay", o, id)

	for _, tc := range []struct {
		name, token, body string
		want              int
		field, message    string
	}{
		{"no token", "", cardBody("4242424242424242"), 401, "", ""},
		{"someone else's order", "other", cardBody("4242424242424242"), 404, "", ""},
		{"an admin cannot pay a customer's order", "admin", cardBody("4242424242424242"), 403, "", ""},
		{"no card", "customer", `{}`, 400, "card", ""},
		{"card fails Luhn (checked by payments)", "customer", cardBody("4242424242424241"), 400, "card.number", "Luhn"},
		{"declined", "customer", cardBody("4000000000000002"), 402, "", "payment declined: generic_decline"},
		{"insufficient funds", "customer", cardBody("4000 0000 0000 9995"), 402, "", "payment declined: insufficient_funds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := map[string]string{"customer": s.customer, "other": s.other, "admin": s.admin}[tc.token]
			r := call(t, "POST", pay, token, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d; want %d: %s", r.status, tc.want, r.raw)
			}
			body := r.object(t)
			if body["field"] != nil && body["field"] != tc.field || tc.field != "" && body["field"] != tc.field ||
				!strings.Contains(r.raw, tc.message) {
				t.Fatalf("%s; want field %q and message %q", r.raw, tc.field, tc.message)
			}
			// A failed payment leaves the order pending.
			if got := call(t, "GET", fmt.Sprintf("%s/orders/%d", o, id), s.customer, "").object(t); got["status"] != "pending" {
				t.Fatalf("order after a failed payment: %v", got)
			}
		})
	}

	r := call(t, "POST", pay, s.customer, cardBody("4242 4242 4242 4242"))
	if r.status != 200 {
		t.Fatalf("pay: %d %s", r.status, r.raw)
	}
	paid := r.object(t)
	if paid["status"] != "paid" || paid["payment_id"] == nil || paid["updated_at"] == paid["created_at"] {
		t.Fatalf("paid order: %s", r.raw)
	}
	// Payments holds the charge, for the customer, of the order's exact total.
	p := call(t, "GET", fmt.Sprintf("%s/payments/%v", s.paymentsURL, paid["payment_id"]), s.customer, "")
	if pm := p.object(t); p.status != 200 || pm["status"] != "succeeded" || pm["order_id"] != float64(id) ||
		!strings.Contains(p.raw, `"amount":2799.97`) || pm["card_last4"] != "4242" {
		t.Fatalf("payment: %d %s", p.status, p.raw)
	}
	if again := call(t, "POST", pay, s.customer, cardBody("4242424242424242")); again.status != 409 {
		t.Fatalf("paying a paid order: %d %s; want 409", again.status, again.raw)
	}
	// Two declines, then the approval: three payments, each under its own attempt's key.
	if paid["payment_id"] != float64(3) {
		t.Fatalf("payment id %v; want 3", paid["payment_id"])
	}
}

func TestPayWhenPaymentsFails(t *testing.T) {
	s := startStack(t, stackOptions{})
	id := s.placeOrder(t, twoLaptopsAndHeadphones)
	pay := fmt.Sprintf("%s/orders/%d/pay", s.orders[0].url, id)

	// Payments charges the card but every answer is lost: the outcome is unknown to orders.
	s.payments.set(func(r *http.Request) fault { return fault{status: http.StatusBadGateway, forward: true} })
	if r := call(t, "POST", pay, s.customer, cardBody("4242424242424242")); r.status != 503 {
		t.Fatalf("payments unreachable: %d %s; want 503", r.status, r.raw)
	}
	if hits := s.payments.hits.Load(); hits != 3 {
		t.Fatalf("%d calls to payments; want 3 (one try and two retries)", hits)
	}
	s.payments.clear()
	if o := call(t, "GET", fmt.Sprintf("%s/orders/%d", s.orders[0].url, id), s.customer, "").object(t); o["status"] != "pending" {
		t.Fatalf("order after an unknown outcome: %v", o)
	}
	// Another card under the same attempt would be a second charge: refused.
	if r := call(t, "POST", pay, s.customer, cardBody("5555555555554444")); r.status != 409 || !strings.Contains(r.raw, "same card") {
		t.Fatalf("another card after an unknown outcome: %d %s; want 409", r.status, r.raw)
	}
	// The same card again learns the stored outcome: paid, by the one charge made before.
	r := call(t, "POST", pay, s.customer, cardBody("4242424242424242"))
	if r.status != 200 || r.object(t)["status"] != "paid" || r.object(t)["payment_id"] != float64(1) {
		t.Fatalf("retry: %d %s; want paid by payment 1", r.status, r.raw)
	}
	if p := call(t, "GET", s.paymentsURL+"/payments/2", s.admin, ""); p.status != 404 {
		t.Fatalf("a second payment exists: %d %s", p.status, p.raw)
	}
}

func TestConcurrentPaysChargeOnce(t *testing.T) {
	s := startStack(t, stackOptions{instances: 2})
	id := s.placeOrder(t, twoLaptopsAndHeadphones)
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			r := call(t, "POST", fmt.Sprintf("%s/orders/%d/pay", s.orders[i%2].url, id), s.customer, cardBody("4242424242424242"))
			switch r.status {
			case 200:
				ok.Add(1)
			case 409:
				conflict.Add(1)
			default:
				t.Errorf("%d %s", r.status, r.raw)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 5 {
		t.Fatalf("%d paid, %d conflicts; want 1 and 5", ok.Load(), conflict.Load())
	}
	if p := call(t, "GET", s.paymentsURL+"/payments/2", s.admin, ""); p.status != 404 {
		t.Fatalf("a second payment exists: %d %s", p.status, p.raw)
	}
}

func TestStatusTransitions(t *testing.T) {
	s := startStack(t, stackOptions{})
	o := s.orders[0].url
	id := s.placeOrder(t, twoLaptopsAndHeadphones)
	status := func(token, to string) reply {
		return call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", o, id), token, fmt.Sprintf(`{"status":%q}`, to))
	}
	for _, tc := range []struct {
		token, to string
		want      int
		now       string
	}{
		{s.customer, "shipped", 403, "pending"},
		{s.customer, "paid", 403, "pending"}, // customers pay through /pay
		{s.other, "cancelled", 404, "pending"},
		{"", "cancelled", 401, "pending"},
		{s.admin, "shipped", 409, "pending"},
		{s.admin, "delivered", 409, "pending"},
		{s.admin, "pending", 409, "pending"},
		{s.admin, "lost", 400, "pending"},
		{s.admin, "paid", 200, "paid"},
		{s.customer, "cancelled", 409, "paid"},
		{s.admin, "delivered", 409, "paid"},
		{s.admin, "shipped", 200, "shipped"},
		{s.admin, "delivered", 200, "delivered"},
		{s.admin, "cancelled", 409, "delivered"},
	} {
		r := status(tc.token, tc.to)
		if r.status != tc.want {
			t.Fatalf("%s -> %s: %d %s; want %d", tc.now, tc.to, r.status, r.raw, tc.want)
		}
		if got := call(t, "GET", fmt.Sprintf("%s/orders/%d", o, id), s.admin, "").object(t)["status"]; got != tc.now {
			t.Fatalf("after %s: status %v; want %s", tc.to, got, tc.now)
		}
	}
	if r := call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", o, id), s.admin, `{}`); r.status != 400 || r.object(t)["field"] != "status" {
		t.Fatalf("missing status: %d %s", r.status, r.raw)
	}
	// Delivered orders keep their stock taken.
	if s.inventory(t, 1) != 48 {
		t.Fatalf("inventory %v; want 48", s.inventory(t, 1))
	}
}

func TestCancelReleasesStock(t *testing.T) {
	s := startStack(t, stackOptions{})
	o := s.orders[0].url
	id := s.placeOrder(t, twoLaptopsAndHeadphones)
	if s.inventory(t, 1) != 48 {
		t.Fatal("not reserved")
	}
	cancel := func() reply {
		return call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", o, id), s.customer, `{"status":"cancelled"}`)
	}
	// Products is down: the order is cancelled, the stock comes back when the request is repeated.
	s.products.set(func(*http.Request) fault { return fault{status: http.StatusServiceUnavailable} })
	if r := cancel(); r.status != 503 || !strings.Contains(r.raw, "repeat this request") {
		t.Fatalf("cancel with products down: %d %s", r.status, r.raw)
	}
	s.products.clear()
	if got := call(t, "GET", fmt.Sprintf("%s/orders/%d", o, id), s.customer, "").object(t)["status"]; got != "cancelled" || s.inventory(t, 1) != 48 {
		t.Fatalf("status %v, inventory %v", got, s.inventory(t, 1))
	}
	if r := cancel(); r.status != 200 || r.object(t)["status"] != "cancelled" {
		t.Fatalf("repeated cancel: %d %s", r.status, r.raw)
	}
	if s.inventory(t, 1) != 50 || s.inventory(t, 3) != 200 {
		t.Fatalf("stock after cancel: %v %v", s.inventory(t, 1), s.inventory(t, 3))
	}
	if r := cancel(); r.status != 409 {
		t.Fatalf("cancel of a cancelled order: %d %s", r.status, r.raw)
	}
	if r := call(t, "POST", fmt.Sprintf("%s/orders/%d/pay", o, id), s.customer, cardBody("4242424242424242")); r.status != 409 {
		t.Fatalf("pay a cancelled order: %d %s", r.status, r.raw)
	}
	// An admin may cancel a customer's order; the release uses the admin's token.
	id2 := s.placeOrder(t, twoLaptopsAndHeadphones)
	if r := call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", o, id2), s.admin, `{"status":"cancelled"}`); r.status != 200 {
		t.Fatalf("admin cancel: %d %s", r.status, r.raw)
	}
	if s.inventory(t, 1) != 50 {
		t.Fatalf("stock after the admin's cancel: %v", s.inventory(t, 1))
	}
}

func TestListAndGetOrders(t *testing.T) {
	s := startStack(t, stackOptions{})
	o := s.orders[0].url
	var ids []int
	for range 3 {
		ids = append(ids, s.placeOrder(t, `{"items":[{"product_id":8,"quantity":1}],"shipping_address":"x"}`))
	}
	if r := s.order(t, 0, s.other, `{"items":[{"product_id":8,"quantity":1}],"shipping_address":"y"}`); r.status != 201 {
		t.Fatal(r.raw)
	}
	r := call(t, "GET", o+"/orders?limit=2", s.customer, "", "X-Forwarded-Prefix", "/api")
	list := r.array(t)
	if r.status != 200 || len(list) != 2 || list[0]["id"] != float64(ids[2]) || list[1]["id"] != float64(ids[1]) ||
		r.header.Get("X-Total-Count") != "3" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("page 1: %d %v %s", r.status, r.header, r.raw)
	}
	if want := `</api/orders?limit=2&page=1>; rel="first", </api/orders?limit=2&page=2>; rel="next", </api/orders?limit=2&page=2>; rel="last"`; r.header.Get("Link") != want {
		t.Fatalf("Link = %s", r.header.Get("Link"))
	}
	if page2 := call(t, "GET", o+"/orders?limit=2&page=2", s.customer, "").array(t); len(page2) != 1 || page2[0]["id"] != float64(ids[0]) {
		t.Fatalf("page 2: %v", page2)
	}
	for query, field := range map[string]string{"?limit=0": "limit", "?limit=101": "limit", "?page=0": "page"} {
		if r := call(t, "GET", o+"/orders"+query, s.customer, ""); r.status != 400 || r.object(t)["field"] != field {
			t.Fatalf("%s: %d %s", query, r.status, r.raw)
		}
	}
	if r := call(t, "GET", o+"/orders", "", ""); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
	for _, tc := range []struct {
		token string
		path  string
		want  int
	}{
		{s.customer, fmt.Sprintf("/orders/%d", ids[0]), 200},
		{s.admin, fmt.Sprintf("/orders/%d", ids[0]), 200},
		{s.other, fmt.Sprintf("/orders/%d", ids[0]), 404},
		{s.customer, "/orders/999", 404},
		{s.customer, "/orders/abc", 400},
	} {
		if r := call(t, "GET", o+tc.path, tc.token, ""); r.status != tc.want {
			t.Fatalf("GET %s: %d %s; want %d", tc.path, r.status, r.raw, tc.want)
		}
	}
}

func TestPayZeroTotal(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := call(t, "POST", s.productsURL+"/products", s.admin, `{"name":"Muestra","price":0,"category":"Misc","inventory":5}`)
	if r.status != 201 {
		t.Fatal(r.raw)
	}
	id := s.placeOrder(t, fmt.Sprintf(`{"items":[{"product_id":%v,"quantity":1}],"shipping_address":"x"}`, r.object(t)["id"]))
	if r := call(t, "POST", fmt.Sprintf("%s/orders/%d/pay", s.orders[0].url, id), s.customer, cardBody("4242424242424242")); r.status != 409 ||
		!strings.Contains(r.raw, "nothing to charge") {
		t.Fatalf("paying a free order: %d %s; want 409", r.status, r.raw)
	}
}
