package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/server"
)

type harness struct {
	url                    string
	store                  *Store
	admin, customer, other string // bearer tokens
	issuer                 *auth.Issuer
}

// startProducts serves the products endpoints on a real loopback socket over a seeded SQLite
// database, verifying tokens through a JWKS served over HTTP, as in production.
func startProducts(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(issuer.JWKS())
	}))
	t.Cleanup(jwks.Close)
	keys, err := auth.NewJWKS(t.Context(), jwks.URL, auth.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	store := seeded(t, filepath.Join(t.TempDir(), "products.db"))
	srv := server.New(server.Config{Service: "products", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Health: store.Ping, MaxBodyBytes: 64 << 10})
	(&service{store: store, verifier: verifier}).routes(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	h := &harness{url: "http://" + ln.Addr().String(), store: store, issuer: issuer}
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

func (r reply) array(t *testing.T) []map[string]any {
	t.Helper()
	var a []map[string]any
	if err := json.Unmarshal([]byte(r.raw), &a); err != nil {
		t.Fatalf("body %q is not a JSON array: %v", r.raw, err)
	}
	return a
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
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(raw)}
}

func TestListProducts(t *testing.T) {
	h := startProducts(t)
	for _, tc := range []struct {
		name, query, prefix string
		want                int
		count               int
		total               string
		link                string
		field               string
	}{
		{name: "default page is an array of all ten", query: "", want: 200, count: 10, total: "10",
			link: `</products?limit=20&page=1>; rel="first", </products?limit=20&page=1>; rel="last"`},
		{name: "middle page", query: "?limit=3&page=2", want: 200, count: 3, total: "10",
			link: `</products?limit=3&page=1>; rel="first", </products?limit=3&page=1>; rel="prev", </products?limit=3&page=3>; rel="next", </products?limit=3&page=4>; rel="last"`},
		{name: "past the end is an empty array", query: "?limit=5&page=9", want: 200, count: 0, total: "10",
			link: `</products?limit=5&page=1>; rel="first", </products?limit=5&page=2>; rel="prev", </products?limit=5&page=2>; rel="last"`},
		{name: "filters stay in links, behind the gateway prefix", query: "?category=Electronics&search=e&limit=2", prefix: "/api", want: 200, count: 2, total: "6",
			link: `</api/products?category=Electronics&limit=2&page=1&search=e>; rel="first", </api/products?category=Electronics&limit=2&page=2&search=e>; rel="next", </api/products?category=Electronics&limit=2&page=3&search=e>; rel="last"`},
		{name: "search with accents, any case", query: "?search=C%C3%81MARA", want: 200, count: 1, total: "1"},
		{name: "search without accents", query: "?search=mecanico", want: 200, count: 1, total: "1"},
		{name: "no match", query: "?category=Toys", want: 200, count: 0, total: "0"},
		{name: "limit zero", query: "?limit=0", want: 400, field: "limit"},
		{name: "limit too big", query: "?limit=101", want: 400, field: "limit"},
		{name: "limit not a number", query: "?limit=ten", want: 400, field: "limit"},
		{name: "page zero", query: "?page=0", want: 400, field: "page"},
		{name: "page negative", query: "?page=-1", want: 400, field: "page"},
		{name: "search too long", query: "?search=" + strings.Repeat("a", 101), want: 400, field: "search"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.prefix != "" {
				headers = []string{"X-Forwarded-Prefix", tc.prefix}
			}
			r := call(t, "GET", h.url+"/products"+tc.query, "", "", headers...)
			if r.status != tc.want {
				t.Fatalf("status %d; want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.field != "" {
				if got := r.object(t)["field"]; got != tc.field {
					t.Fatalf("field = %v; want %s", got, tc.field)
				}
				return
			}
			if items := r.array(t); len(items) != tc.count {
				t.Fatalf("%d items; want %d", len(items), tc.count)
			}
			if got := r.header.Get("X-Total-Count"); got != tc.total {
				t.Fatalf("X-Total-Count = %s; want %s", got, tc.total)
			}
			if tc.link != "" && r.header.Get("Link") != tc.link {
				t.Fatalf("Link =\n%s\nwant\n%s", r.header.Get("Link"), tc.link)
			}
			if r.header.Get("Cache-Control") != "public, max-age=30" || r.header.Get("ETag") == "" {
				t.Fatalf("cache headers: %q %q", r.header.Get("Cache-Control"), r.header.Get("ETag"))
			}
		})
	}
}

func TestProductJSONAndConditionalGets(t *testing.T) {
	h := startProducts(t)
	r := call(t, "GET", h.url+"/products/1", "", "")
	if r.status != 200 || r.header.Get("Cache-Control") != "public, max-age=60" {
		t.Fatalf("GET /products/1: %d %v", r.status, r.header)
	}
	if !strings.Contains(r.raw, `"price":1299.99`) {
		t.Fatalf("price not rendered exactly: %s", r.raw)
	}
	p := r.object(t)
	for _, k := range []string{"id", "name", "description", "price", "category", "inventory", "created_at"} {
		if _, ok := p[k]; !ok {
			t.Fatalf("product lacks %s: %s", k, r.raw)
		}
	}
	etag := r.header.Get("ETag")
	if nm := call(t, "GET", h.url+"/products/1", "", "", "If-None-Match", etag); nm.status != 304 || nm.raw != "" {
		t.Fatalf("If-None-Match with the current ETag: %d %q", nm.status, nm.raw)
	}
	// A change makes the old ETag stale.
	if _, err := h.store.SetInventory(context.Background(), 1, 49); err != nil {
		t.Fatal(err)
	}
	if nm := call(t, "GET", h.url+"/products/1", "", "", "If-None-Match", etag); nm.status != 200 {
		t.Fatalf("If-None-Match with a stale ETag: %d", nm.status)
	}
	list := call(t, "GET", h.url+"/products", "", "")
	if nm := call(t, "GET", h.url+"/products", "", "", "If-None-Match", list.header.Get("ETag")); nm.status != 304 || nm.header.Get("X-Total-Count") != "10" {
		t.Fatalf("list If-None-Match: %d, total %q", nm.status, nm.header.Get("X-Total-Count"))
	}
	for path, want := range map[string]int{"/products/999": 404, "/products/abc": 400, "/products/0": 400} {
		r := call(t, "GET", h.url+path, "", "")
		if r.status != want || r.object(t)["request_id"] == nil || r.header.Get("ETag") != "" {
			t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
		}
	}
}

func TestAdminWrites(t *testing.T) {
	h := startProducts(t)
	valid := `{"name":"Lámpara","description":"Luz cálida","price":19.99,"category":"Hogar","inventory":5}`
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
		field                           string
	}{
		{"create without token", "POST", "/products", "", valid, 401, ""},
		{"create as customer", "POST", "/products", "customer", valid, 403, ""},
		{"create", "POST", "/products", "admin", valid, 201, ""},
		{"create without inventory", "POST", "/products", "admin", `{"name":"A","price":1,"category":"B"}`, 201, ""},
		{"price with 3 decimals", "POST", "/products", "admin", `{"name":"A","price":1.999,"category":"B"}`, 400, "price"},
		{"price as string", "POST", "/products", "admin", `{"name":"A","price":"1.99","category":"B"}`, 400, "price"},
		{"negative price", "POST", "/products", "admin", `{"name":"A","price":-1,"category":"B"}`, 400, "price"},
		{"missing price", "POST", "/products", "admin", `{"name":"A","category":"B"}`, 400, "price"},
		{"missing name", "POST", "/products", "admin", `{"price":1,"category":"B"}`, 400, "name"},
		{"blank category", "POST", "/products", "admin", `{"name":"A","price":1,"category":" "}`, 400, "category"},
		{"negative inventory", "POST", "/products", "admin", `{"name":"A","price":1,"category":"B","inventory":-2}`, 400, "inventory"},
		{"fractional inventory", "POST", "/products", "admin", `{"name":"A","price":1,"category":"B","inventory":1.5}`, 400, "inventory"},
		{"update", "PUT", "/products/3", "admin", `{"name":"Auriculares","price":149.5,"category":"Electronics"}`, 200, ""},
		{"update as customer", "PUT", "/products/3", "customer", `{"name":"A","price":1,"category":"B"}`, 403, ""},
		{"update missing product", "PUT", "/products/999", "admin", `{"name":"A","price":1,"category":"B"}`, 404, ""},
		{"update bad id", "PUT", "/products/x", "admin", `{"name":"A","price":1,"category":"B"}`, 400, "id"},
		{"set inventory", "PUT", "/products/4/inventory", "admin", `{"inventory":7}`, 200, ""},
		{"set inventory without token", "PUT", "/products/4/inventory", "", `{"inventory":7}`, 401, ""},
		{"set inventory as customer", "PUT", "/products/4/inventory", "customer", `{"inventory":7}`, 403, ""},
		{"set inventory missing", "PUT", "/products/4/inventory", "admin", `{}`, 400, "inventory"},
		{"set inventory negative", "PUT", "/products/4/inventory", "admin", `{"inventory":-1}`, 400, "inventory"},
		{"set inventory missing product", "PUT", "/products/999/inventory", "admin", `{"inventory":1}`, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := map[string]string{"admin": h.admin, "customer": h.customer}[tc.token]
			r := call(t, tc.method, h.url+tc.path, token, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d; want %d: %s", r.status, tc.want, r.raw)
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
	r := call(t, "GET", h.url+"/products/3", "", "")
	if p := r.object(t); p["name"] != "Auriculares" || p["price"] != 149.5 || p["inventory"] != float64(200) {
		t.Fatalf("after update: %s", r.raw)
	}
	if !strings.Contains(r.raw, `"price":149.50`) {
		t.Fatalf("price not rendered with two decimals: %s", r.raw)
	}
	if p := call(t, "GET", h.url+"/products/4", "", "").object(t); p["inventory"] != float64(7) {
		t.Fatalf("inventory after PUT: %v", p["inventory"])
	}
	created := call(t, "GET", h.url+"/products?search=lampara", "", "").array(t)
	if len(created) != 1 || created[0]["price"] != 19.99 || created[0]["inventory"] != float64(5) {
		t.Fatalf("created product: %v", created)
	}
}

// TestOversizedBodyIs413: a declared body over the limit is refused from its headers alone. The
// request is sent as headers only: a client still writing 70 KiB when the server answers and
// closes may see the connection reset before it reads the 413, which says nothing about the
// server.
func TestOversizedBodyIs413(t *testing.T) {
	h := startProducts(t)
	u, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST /products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", h.admin, 70<<10)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("oversized body: %d %s; want 413 with a JSON error", resp.StatusCode, body)
	}
}
