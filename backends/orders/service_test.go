package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const twoLaptopsAndHeadphones = `{"items":[{"product_id":1,"quantity":2},{"product_id":3,"quantity":1}],"shipping_address":"Calle Mayor 1, Madrid"}`

func TestCreateOrder(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := s.order(t, 0, s.customer, `{"items":[{"product_id":1,"quantity":2,"unit_price":0.01},{"product_id":3,"quantity":1}],
		"shipping_address":"  Calle Mayor 1\nMadrid  ","total":0.01}`)
	if r.status != 201 {
		t.Fatalf("POST /orders: %d %s", r.status, r.raw)
	}
	o := r.object(t)
	// Prices come from products, never from the client.
	if !strings.Contains(r.raw, `"total":2799.97`) || !strings.Contains(r.raw, `"unit_price":1299.99`) {
		t.Fatalf("prices not from products or not exact: %s", r.raw)
	}
	items := o["items"].([]any)
	first := items[0].(map[string]any)
	if o["status"] != "pending" || o["user_id"] != float64(2) || o["currency"] != "USD" || o["payment_id"] != nil ||
		o["shipping_address"] != "Calle Mayor 1\nMadrid" || len(items) != 2 || first["name"] != "Laptop Gaming" ||
		first["quantity"] != float64(2) || o["created_at"] == nil || o["updated_at"] != o["created_at"] {
		t.Fatalf("order: %s", r.raw)
	}
	if r.header.Get("Location") != fmt.Sprintf("/orders/%v", o["id"]) {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	if s.inventory(t, 1) != 48 || s.inventory(t, 3) != 199 {
		t.Fatalf("stock not reserved: %v %v", s.inventory(t, 1), s.inventory(t, 3))
	}
}

func TestCreateOrderRejectsBadInput(t *testing.T) {
	s := startStack(t, stackOptions{})
	addr := `,"shipping_address":"Calle Mayor 1"`
	for _, tc := range []struct {
		name, token, body string
		want              int
		field             string
	}{
		{"no token", "", twoLaptopsAndHeadphones, 401, ""},
		{"no body", "customer", "", 400, "body"},
		{"malformed", "customer", `{"items":[`, 400, "body"},
		{"no items", "customer", `{"items":[]` + addr + `}`, 400, "items"},
		{"items not an array", "customer", `{"items":{}` + addr + `}`, 400, "items"},
		{"missing product id", "customer", `{"items":[{"quantity":1}]` + addr + `}`, 400, "items[0].product_id"},
		{"zero quantity", "customer", `{"items":[{"product_id":1,"quantity":0}]` + addr + `}`, 400, "items[0].quantity"},
		{"quantity too big", "customer", `{"items":[{"product_id":1,"quantity":1001}]` + addr + `}`, 400, "items[0].quantity"},
		{"fractional quantity", "customer", `{"items":[{"product_id":1,"quantity":1.5}]` + addr + `}`, 400, "items.quantity"},
		{"duplicate product", "customer", `{"items":[{"product_id":1,"quantity":1},{"product_id":1,"quantity":2}]` + addr + `}`, 400, "items[1].product_id"},
		{"no address", "customer", `{"items":[{"product_id":1,"quantity":1}]}`, 400, "shipping_address"},
		{"blank address", "customer", `{"items":[{"product_id":1,"quantity":1}],"shipping_address":"  "}`, 400, "shipping_address"},
		{"address with a control character", "customer", `{"items":[{"product_id":1,"quantity":1}],"shipping_address":"a\u0000b"}`, 400, "shipping_address"},
		{"unknown product", "customer", `{"items":[{"product_id":1,"quantity":1},{"product_id":999,"quantity":1}]` + addr + `}`, 404, ""},
		{"insufficient stock", "customer", `{"items":[{"product_id":10,"quantity":16}]` + addr + `}`, 409, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := map[string]string{"customer": s.customer}[tc.token]
			r := s.order(t, 0, token, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d; want %d: %s", r.status, tc.want, r.raw)
			}
			body := r.object(t)
			if tc.field != "" && body["field"] != tc.field {
				t.Fatalf("field = %v; want %s: %s", body["field"], tc.field, r.raw)
			}
			if body["request_id"] == nil {
				t.Fatalf("error without request_id: %s", r.raw)
			}
		})
	}
	if s.inventory(t, 1) != 50 || s.inventory(t, 10) != 15 {
		t.Fatal("a rejected order took stock")
	}
	if list := call(t, "GET", s.orders[0].url+"/orders", s.customer, ""); list.header.Get("X-Total-Count") != "0" {
		t.Fatalf("rejected orders were stored: %s", list.raw)
	}
}

func TestFailureMidOrderReleasesReservations(t *testing.T) {
	s := startStack(t, stackOptions{})
	t.Run("insufficient stock on the last line", func(t *testing.T) {
		r := s.order(t, 0, s.customer, `{"items":[{"product_id":1,"quantity":2},{"product_id":3,"quantity":5},{"product_id":10,"quantity":16}],"shipping_address":"x"}`)
		if r.status != 409 || !strings.Contains(r.raw, "insufficient stock") || !strings.Contains(r.raw, "product 10") {
			t.Fatalf("%d %s; want 409 naming product 10", r.status, r.raw)
		}
		if s.inventory(t, 1) != 50 || s.inventory(t, 3) != 200 || s.inventory(t, 10) != 15 {
			t.Fatalf("stock after the failed order: %v %v %v", s.inventory(t, 1), s.inventory(t, 3), s.inventory(t, 10))
		}
	})
	t.Run("a reserve whose outcome is never known", func(t *testing.T) {
		// Products takes the reservation of product 3, but every answer to it is lost: orders
		// must release product 1 and product 3 alike.
		s.products.set(func(r *http.Request) fault {
			if r.URL.Path == "/products/3/reserve" {
				return fault{status: http.StatusGatewayTimeout, forward: true}
			}
			return fault{}
		})
		defer s.products.clear()
		r := s.order(t, 0, s.customer, twoLaptopsAndHeadphones)
		if r.status != 503 {
			t.Fatalf("%d %s; want 503", r.status, r.raw)
		}
		if s.inventory(t, 1) != 50 || s.inventory(t, 3) != 200 {
			t.Fatalf("stock after the lost reserve: %v %v; want 50 and 200", s.inventory(t, 1), s.inventory(t, 3))
		}
	})
	t.Run("a transient failure is retried", func(t *testing.T) {
		var failed sync.Once
		s.products.set(func(r *http.Request) fault {
			f := fault{}
			if r.URL.Path == "/products/3/reserve" {
				failed.Do(func() { f = fault{status: http.StatusServiceUnavailable, forward: true} })
			}
			return f
		})
		defer s.products.clear()
		r := s.order(t, 0, s.customer, twoLaptopsAndHeadphones)
		if r.status != 201 {
			t.Fatalf("%d %s; want 201 after a retry", r.status, r.raw)
		}
		// The retried reserve was a replay at products: one unit, not two.
		if s.inventory(t, 3) != 199 {
			t.Fatalf("inventory of product 3 = %v; want 199", s.inventory(t, 3))
		}
	})
	t.Run("the database fails after the reservations", func(t *testing.T) {
		before := s.inventory(t, 1)
		broken := startOrders(t, filepath.Join(t.TempDir(), "orders.db"), s.products.url, s.payments.url, 0)
		broken.store.Close()
		r := call(t, "POST", broken.url+"/orders", s.customer, twoLaptopsAndHeadphones)
		if r.status != 500 || strings.Contains(r.raw, "sql") {
			t.Fatalf("%d %s; want a plain 500", r.status, r.raw)
		}
		if s.inventory(t, 1) != before {
			t.Fatalf("inventory %v; want %v: the reservation was not released", s.inventory(t, 1), before)
		}
	})
}
