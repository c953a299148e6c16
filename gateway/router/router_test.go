package router

import (
	"fmt"
	"testing"
)

const (
	get  = 0
	post = 2
	put  = 3
)

func table(t testing.TB) *Table[string] {
	tbl, err := New([]Route[string]{
		{Prefix: "/", Value: "root"},
		{Prefix: "/api/products", Methods: 1<<get | 1<<post, Value: "products"},
		{Prefix: "/api/products", Host: "admin.example.com", Value: "products-admin"},
		{Prefix: "/api/products", Host: "*.example.com", Methods: 1 << get, Value: "products-wild"},
		{Path: "/api/products/special", Value: "special"},
		{Prefix: "/api/ws/", Value: "ws"},
		{Prefix: "/api/orders", Methods: 1 << put, Value: "orders-put"},
		{Prefix: "/static", Host: "cdn.example.com:8443", Value: "cdn"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func TestMatch(t *testing.T) {
	tbl := table(t)
	tests := []struct {
		host, path string
		method     int
		want       string
		outcome    Outcome
		allow      uint32
	}{
		{"shop.local", "/api/products", get, "products", Found, 0},
		{"shop.local", "/api/products/", get, "products", Found, 0},
		{"shop.local", "/api/products/42", get, "products", Found, 0},
		{"shop.local", "/api/productsX", get, "root", Found, 0},
		{"shop.local", "/api/products/special", put, "special", Found, 0},
		{"shop.local", "/api/products/special/x", put, "", MethodNotAllowed, 1<<get | 1<<post},
		{"ADMIN.Example.COM:8080", "/api/products/1", put, "products-admin", Found, 0},
		{"a.example.com", "/api/products", get, "products-wild", Found, 0},
		{"a.example.com", "/api/products", post, "products", Found, 0},
		{"example.com", "/api/products", get, "products", Found, 0},
		{"shop.local", "/api/ws/orders", get, "ws", Found, 0},
		{"shop.local", "/api/ws", get, "ws", Found, 0},
		{"shop.local", "/api/orders", get, "", MethodNotAllowed, 1 << put},
		{"cdn.example.com:8443", "/static/app.js", get, "cdn", Found, 0},
		{"cdn.example.com", "/static/app.js", get, "root", Found, 0},
		{"x", "/", get, "root", Found, 0},
		{"x", "/anything/else", -1, "root", Found, 0},
	}
	for _, tc := range tests {
		v, o, a := tbl.Match([]byte(tc.host), []byte(tc.path), tc.method)
		if v != tc.want || o != tc.outcome || a != tc.allow {
			t.Errorf("Match(%s, %s, %d) = %q, %v, %b; want %q, %v, %b", tc.host, tc.path, tc.method, v, o, a, tc.want, tc.outcome, tc.allow)
		}
	}
}

func TestNoRootIsNotFound(t *testing.T) {
	tbl, _ := New([]Route[int]{{Prefix: "/api", Value: 1}, {Path: "/exact", Host: "h", Value: 2}})
	for _, path := range []string{"/", "/ap", "/apix", "/other/api"} {
		if _, o, _ := tbl.Match([]byte("h"), []byte(path), get); o != NotFound {
			t.Errorf("%s: outcome %v, want NotFound", path, o)
		}
	}
	if _, o, _ := tbl.Match([]byte("other"), []byte("/exact"), get); o != NotFound {
		t.Error("exact route matched another host")
	}
}

func BenchmarkMatch(b *testing.B) {
	var routes []Route[int]
	for i := range 50 {
		routes = append(routes, Route[int]{Prefix: fmt.Sprintf("/api/service%d", i), Value: i})
	}
	tbl, _ := New(routes)
	host, path := []byte("shop.example.com"), []byte("/api/service42/items/123")
	b.ReportAllocs()
	for b.Loop() {
		tbl.Match(host, path, get)
	}
}
