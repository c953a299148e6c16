package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/server"
	"github.com/archway-gateway/archway/internal/testenv"
)

// testSecret is the HS256 secret the test processes share, so tests mint their own tokens.
const testSecret = "orders-tests-shared-secret-0123456789"

// The products and payments binaries, built once per test run: they are package main, so the
// real services run as processes on loopback ports.
var peerBinaries struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedRabbitMQ()
	if peerBinaries.dir != "" {
		os.RemoveAll(peerBinaries.dir)
	}
	os.Exit(code)
}

func buildPeers(t *testing.T) string {
	t.Helper()
	peerBinaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "orders-peers-")
		if err != nil {
			peerBinaries.err = err
			return
		}
		peerBinaries.dir = dir
		out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/archway-gateway/archway/backends/products",
			"github.com/archway-gateway/archway/backends/payments").CombinedOutput()
		if err != nil {
			peerBinaries.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if peerBinaries.err != nil {
		t.Fatal(peerBinaries.err)
	}
	return peerBinaries.dir
}

// faultProxy stands between orders and a peer. While its hook returns a status the request is
// handled as the hook says instead of (or after) reaching the peer.
type faultProxy struct {
	url  string
	hook atomic.Pointer[func(r *http.Request) fault]
	hits atomic.Int32
}

// fault says what the proxy does with one request.
type fault struct {
	status  int  // answer this status; 0 passes the request through
	forward bool // with status: forward the request first and answer status instead of the reply
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		var f fault
		if h := p.hook.Load(); h != nil {
			f = (*h)(r)
		}
		switch {
		case f.status == 0:
			rp.ServeHTTP(w, r)
		case f.forward:
			rp.ServeHTTP(httptest.NewRecorder(), r) // the peer acts; orders never hears of it
			w.WriteHeader(f.status)
		default:
			w.WriteHeader(f.status)
		}
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *faultProxy) set(h func(r *http.Request) fault) { p.hook.Store(&h) }
func (p *faultProxy) clear()                            { p.hook.Store(nil) }

// ordersInstance is one orders service in this process.
type ordersInstance struct {
	url    string
	store  *Store
	events *eventTasks
	stop   func() // shuts it down (also done at cleanup)
}

type stack struct {
	productsURL, paymentsURL string // the services themselves
	products, payments       *faultProxy
	orders                   []*ordersInstance
	issuer                   *auth.Issuer
	admin, customer, other   string // tokens of users 1, 2, 3
}

type stackOptions struct {
	ordersDB, productsDB, paymentsDB string // fresh SQLite files when empty
	instances                        int    // orders instances sharing ordersDB (1 when 0)
	pingInterval                     time.Duration
	broker                           brokerSettings // products and orders use the broker when url is set
}

// startStack runs real products and payments processes and orders instances in this process,
// all verifying the same HS256 tokens.
func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	bin := buildPeers(t)
	dir := t.TempDir()
	if opts.productsDB == "" {
		opts.productsDB = filepath.Join(dir, "products.db")
	}
	if opts.paymentsDB == "" {
		opts.paymentsDB = filepath.Join(dir, "payments.db")
	}
	if opts.ordersDB == "" {
		opts.ordersDB = filepath.Join(dir, "orders.db")
	}
	s := &stack{}
	for _, svc := range []struct {
		name, db string
		url      *string
	}{{"products", opts.productsDB, &s.productsURL}, {"payments", opts.paymentsDB, &s.paymentsURL}} {
		addr := testenv.FreeAddr(t)
		args := []string{"-addr", addr, "-database-url", svc.db, "-jwt-secret", testSecret, "-log-level", "warn"}
		if svc.name == "products" && opts.broker.url != "" {
			args = append(args, "-amqp-url", opts.broker.url)
		}
		if svc.name == "products" && opts.broker.pushSecret != "" {
			args = append(args, "-events-secret", opts.broker.pushSecret)
		}
		testenv.StartProcess(t, svc.name, filepath.Join(bin, svc.name), args, testenv.ProcessOptions{})
		*svc.url = "http://" + addr
	}
	for _, u := range []string{s.productsURL, s.paymentsURL} {
		if err := waitHealthy(u, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s.products, s.payments = newFaultProxy(t, s.productsURL), newFaultProxy(t, s.paymentsURL)
	var err error
	if s.issuer, err = auth.NewHS256Issuer([]byte(testSecret), auth.IssuerConfig{}); err != nil {
		t.Fatal(err)
	}
	s.admin, _, _ = s.issuer.Issue(1, "root@example.com", auth.RoleAdmin)
	s.customer, _, _ = s.issuer.Issue(2, "ana@example.com", auth.RoleCustomer)
	s.other, _, _ = s.issuer.Issue(3, "bo@example.com", auth.RoleCustomer)
	for range max(opts.instances, 1) {
		s.orders = append(s.orders, startOrdersWith(t, opts.ordersDB, s.products.url, s.payments.url, opts.pingInterval, opts.broker))
	}
	return s
}

func waitHealthy(base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within %s: %v", base, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startOrders(t *testing.T, dbURL, productsURL, paymentsURL string, ping time.Duration) *ordersInstance {
	t.Helper()
	return startOrdersWith(t, dbURL, productsURL, paymentsURL, ping, brokerSettings{})
}

// startOrdersWith is startOrders with order events over a broker when broker.url is set.
func startOrdersWith(t *testing.T, dbURL, productsURL, paymentsURL string, ping time.Duration, broker brokerSettings) *ordersInstance {
	t.Helper()
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t, dbURL)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	feed, err := NewFeed(ctx, store, log, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	opts := ClientOptions{Timeout: 3 * time.Second, Retries: 2, Backoff: 20 * time.Millisecond}
	productsPeer := newPeerClient("products", StaticPeer(productsURL), opts)
	events := newEventTasks(store, feed, broker, productsPeer, log)
	srv := server.New(server.Config{Service: "orders", Logger: log, Health: store.Ping, MaxBodyBytes: 64 << 10})
	events.registerMetrics(srv.Registry())
	(&service{store: store, verifier: verifier, feed: feed, currency: "USD", log: log,
		products: &productsClient{productsPeer},
		payments: &paymentsClient{newPeerClient("payments", StaticPeer(paymentsURL), opts)},
		ws:       wsSettings{PingInterval: ping},
	}).routes(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { feed.Run(ctx) })
	wg.Go(func() { stopEvents := events.start(ctx); <-ctx.Done(); stopEvents() })
	wg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			t.Error(err)
		}
	})
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return &ordersInstance{url: "http://" + ln.Addr().String(), store: store, events: events, stop: stop}
}

type reply struct {
	status int
	header http.Header
	raw    string
}

func (r reply) object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.raw), &m); err != nil {
		t.Fatalf("body %q (status %d): %v", r.raw, r.status, err)
	}
	return m
}

func (r reply) array(t testing.TB) []map[string]any {
	t.Helper()
	var a []map[string]any
	if err := json.Unmarshal([]byte(r.raw), &a); err != nil {
		t.Fatalf("body %q is not a JSON array: %v", r.raw, err)
	}
	return a
}

// call makes one HTTP request; safe from any goroutine (failures are t.Error).
func call(t testing.TB, method, url, token, body string, headers ...string) reply {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return reply{}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return reply{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(raw)}
}

// inventory reads a product's stock from products itself.
func (s *stack) inventory(t *testing.T, productID int) float64 {
	t.Helper()
	r := call(t, "GET", fmt.Sprintf("%s/products/%d", s.productsURL, productID), "", "")
	if r.status != 200 {
		t.Fatalf("GET product %d: %d %s", productID, r.status, r.raw)
	}
	return r.object(t)["inventory"].(float64)
}

func (s *stack) setInventory(t *testing.T, productID, n int) {
	t.Helper()
	r := call(t, "PUT", fmt.Sprintf("%s/products/%d/inventory", s.productsURL, productID), s.admin, fmt.Sprintf(`{"inventory":%d}`, n))
	if r.status != 200 {
		t.Fatalf("set inventory: %d %s", r.status, r.raw)
	}
}

// order places an order through instance i and returns the reply.
func (s *stack) order(t testing.TB, i int, token, body string) reply {
	return call(t, "POST", s.orders[i].url+"/orders", token, body)
}

// placeOrder places a valid order for the customer and returns its id.
func (s *stack) placeOrder(t *testing.T, body string) int {
	t.Helper()
	r := s.order(t, 0, s.customer, body)
	if r.status != 201 {
		t.Fatalf("POST /orders: %d %s", r.status, r.raw)
	}
	return int(r.object(t)["id"].(float64))
}

func cardBody(number string) string {
	return fmt.Sprintf(`{"card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":"123"}}`, number, time.Now().Year()+2)
}
