package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/archway-gateway/archway/internal/stack"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/fasthttp/websocket"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "archway-stack-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "./gateway", "./backends/users", "./backends/products", "./backends/orders", "./backends/payments")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the stack: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// running is a whole stack on free ports with the repository's routes.yaml.
type running struct {
	*stack.Stack
	gw   string // http://127.0.0.1:port
	ws   string // ws://127.0.0.1:port
	opts stack.Options
	// output is everything the stack's processes printed so far.
	output func() string
}

func startStack(t *testing.T, consul bool, tweaks ...func(*stack.Options)) *running {
	t.Helper()
	return startStackWith(t, consul, nil, tweaks...)
}

// startStackWith is startStack with the gateway's configuration file passed through edit first.
func startStackWith(t *testing.T, consul bool, edit func(config []byte) []byte, tweaks ...func(*stack.Options)) *running {
	t.Helper()
	free := testenv.FreePorts(t, 12)
	ports := stack.Ports{Gateway: free[0], Admin: free[1], Users: free[2], Products1: free[3], Products2: free[4], Orders1: free[5], Orders2: free[6], Payments: free[7],
		Consul: free[8], SerfLAN: free[9], SerfWAN: free[10], ConsulServer: free[11]}
	config := "routes.yaml"
	bin := binDir
	if consul {
		config = "routes.consul.yaml"
		bin = consulBinDir(t)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	configFile := behindLoopbackProxy(t, filepath.Join(testenv.RepoRoot(), config))
	if edit != nil {
		data, err := os.ReadFile(configFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(configFile, edit(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := stack.Options{
		BinDir: bin, DataDir: t.TempDir(), Config: configFile,
		Ports: ports, Out: lockedBuffer{&logs, &mu}, Consul: consul,
		// The configuration is a copy elsewhere: the storefront stays where it is.
		Env: []string{"BCRYPT_COST=4", "ARCHWAY_STATIC_ROOT=" + filepath.Join(testenv.RepoRoot(), "storefront", "dist")},
	}
	for _, tweak := range tweaks {
		tweak(&o)
	}
	s, err := stack.Start(context.Background(), o)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		if err := s.Stop(10 * time.Second); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("stack output:\n%s", logs.String())
			mu.Unlock()
		}
	})
	output := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	return &running{Stack: s, gw: fmt.Sprintf("http://127.0.0.1:%d", ports.Gateway), ws: fmt.Sprintf("ws://127.0.0.1:%d", ports.Gateway), opts: o, output: output}
}

// behindLoopbackProxy returns a copy of the configuration at path that trusts X-Forwarded-For
// from 127.0.0.1, as if a load balancer there stood in front of the gateway: the tests play many
// shoppers, each with their own rate-limit buckets, from one address. The repository's files
// trust no one (a local client could otherwise pick its own bucket); that one line is the only
// difference.
func behindLoopbackProxy(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("trusted_proxies")) {
		t.Fatalf("%s trusts proxies; no proxy stands in front of it", path)
	}
	const server = "server:\n"
	if !bytes.HasPrefix(data, []byte(server)) && !bytes.Contains(data, []byte("\n"+server)) {
		t.Fatalf("%s has no server section", path)
	}
	out := bytes.Replace(data, []byte("\n"+server), []byte("\n"+server+"  trusted_proxies: [\"127.0.0.1/32\"]\n"), 1)
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

type lockedBuffer struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// call does one JSON request through the gateway. clientIP, when set, arrives as
// X-Forwarded-For from 127.0.0.1, a trusted proxy in the tests' configuration: rate limits key
// on it, as they would for clients behind a load balancer. Every Location (and
// Content-Location) an answer carries is followed, as a client library does, and must lead to
// JSON through the gateway's API.
func call(t *testing.T, method, url, token, clientIP string, body any, out any, headers ...string) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if clientIP != "" {
		req.Header.Set("X-Forwarded-For", clientIP)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := journeyClient(t, token, clientIP).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	if token == "" {
		// A registration answers with the new user's token; the client uses it from then on.
		var issued struct{ Token string }
		if json.Unmarshal(raw, &issued) == nil {
			token = issued.Token
		}
	}
	for _, h := range []string{"Location", "Content-Location"} {
		if loc := resp.Header.Get(h); loc != "" && resp.StatusCode < 400 {
			followLocation(t, resp.Request.URL, h, loc, token, clientIP)
		}
	}
	return resp.StatusCode
}

// journeyClient follows redirects as a browser or client library does, keeping the credentials
// and client address on each hop, and refuses to leave the gateway's API on the way.
func journeyClient(t *testing.T, token, clientIP string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > 5 {
			return fmt.Errorf("more than 5 redirects")
		}
		if req.URL.Host != via[0].URL.Host || !strings.HasPrefix(req.URL.Path, "/api/") {
			return fmt.Errorf("redirected out of the API to %s", req.URL)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if clientIP != "" {
			req.Header.Set("X-Forwarded-For", clientIP)
		}
		return nil
	}}
}

// followLocation GETs a Location (resolved against the request's URL) through the gateway and
// requires JSON from the API.
func followLocation(t *testing.T, base *neturl.URL, header, loc, token, clientIP string) {
	t.Helper()
	ref, err := neturl.Parse(loc)
	if err != nil {
		t.Fatalf("%s %q: %v", header, loc, err)
	}
	target := base.ResolveReference(ref)
	if target.Host != base.Host || !strings.HasPrefix(target.Path, "/api/") {
		t.Fatalf("%s %q of %s leads out of the gateway's API (to %s)", header, loc, base, target)
	}
	req, _ := http.NewRequest(http.MethodGet, target.String(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if clientIP != "" {
		req.Header.Set("X-Forwarded-For", clientIP)
	}
	resp, err := journeyClient(t, token, clientIP).Do(req)
	if err != nil {
		t.Fatalf("following %s %s: %v", header, target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v any
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || json.Unmarshal(raw, &v) != nil {
		t.Fatalf("following %s %s: %d %s %.200s", header, target, resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
}

type fetched struct {
	*http.Response
	body []byte
}

// fetch GETs url through the gateway as a client that follows redirects.
func fetch(t *testing.T, url, token, clientIP string) fetched {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if clientIP != "" {
		req.Header.Set("X-Forwarded-For", clientIP)
	}
	resp, err := journeyClient(t, token, clientIP).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fetched{resp, body}
}

type authResp struct {
	Token string `json:"token"`
	User  struct {
		ID int64 `json:"id"`
	} `json:"user"`
}

type product struct {
	ID        int64   `json:"id"`
	Name      string  `json:"name"`
	Price     float64 `json:"price"`
	Inventory int     `json:"inventory"`
	Category  string  `json:"category"`
}

type order struct {
	ID     int64   `json:"id"`
	Status string  `json:"status"`
	Total  float64 `json:"total"`
	Error  string  `json:"error"`
}

func register(t *testing.T, s *running, email, ip string) authResp {
	t.Helper()
	var a authResp
	if code := call(t, "POST", s.gw+"/api/auth/register", "", ip, map[string]string{
		"email": email, "password": "correct-horse-1", "firstName": "Test", "lastName": "Shopper"}, &a); code != 201 {
		t.Fatalf("register %s: %d", email, code)
	}
	return a
}

// TestShopperJourney walks a shopper through the gateway: register, log in, browse and search,
// order two items, pay with 4242..., see "paid" arrive on the WebSocket, and find the
// inventory decreased. Then the unhappy paths: a declined card, a wrong password, someone
// else's order.
func TestShopperJourney(t *testing.T) {
	shopperJourney(t, startStack(t, false))
}

// TestShopperJourneyWithConsul: the same journey on the stack of `make run-consul`: the services
// register in a real Consul agent, orders finds products and payments through it, and the
// gateway discovers every upstream.
func TestShopperJourneyWithConsul(t *testing.T) {
	testenv.RequireBinary(t, "consul")
	s := startStack(t, true)
	shopperJourney(t, s)
	for _, name := range []string{"users", "products", "orders", "payments"} {
		if n := len(s.gateway(t).upstreamTargets(t, s, name)); n == 0 {
			t.Errorf("upstream %s has no discovered targets", name)
		}
	}
}

func shopperJourney(t *testing.T, s *running) {
	const ip = "198.51.100.10"
	register(t, s, "ada@example.com", ip)
	var login authResp
	if code := call(t, "POST", s.gw+"/api/auth/login", "", ip, map[string]string{"email": "ADA@example.com", "password": "correct-horse-1"}, &login); code != 200 || login.Token == "" {
		t.Fatalf("login: %d", code)
	}
	token := login.Token

	var all []product
	if code := call(t, "GET", s.gw+"/api/products", "", ip, nil, &all); code != 200 || len(all) != 10 {
		t.Fatalf("catalog: %d, %d products", code, len(all))
	}
	var found []product
	if code := call(t, "GET", s.gw+"/api/products?search=monitor", "", ip, nil, &found); code != 200 || len(found) != 1 || found[0].Name != "Monitor 4K" {
		t.Fatalf("search: %d %+v", code, found)
	}
	laptop, mouse := all[0], all[7]
	if laptop.Name != "Laptop Gaming" || mouse.Name != "Mouse Inalámbrico" {
		t.Fatalf("unexpected catalog order: %s, %s", laptop.Name, mouse.Name)
	}

	// The original stack's load-test checks, through the gateway: the catalog with a trailing
	// slash is the same JSON array (no redirect to the service's own path), an item has id, name
	// and price. The catalog is cached at the edge. (From another address of the shopper's, so
	// the rate limits of the orders below keep their burst.)
	{
		const ip = "198.51.100.12"
		catalog := fetch(t, s.gw+"/api/products/", "", ip)
		var slashed []product
		if catalog.StatusCode != 200 || json.Unmarshal(catalog.body, &slashed) != nil || len(slashed) != 10 {
			t.Fatalf("GET /api/products/: %d %.200s", catalog.StatusCode, catalog.body)
		}
		if again := fetch(t, s.gw+"/api/products/", "", ip); again.Header.Get("X-Cache") != "HIT" {
			t.Errorf("the catalog is not cached at the edge: X-Cache %q", again.Header.Get("X-Cache"))
		}
		for _, path := range []string{"/api/products/2", "/api/products/2/"} {
			var item map[string]any
			if code := call(t, "GET", s.gw+path, "", ip, nil, &item); code != 200 || item["id"] != float64(2) || item["name"] == nil || item["price"] == nil {
				t.Fatalf("GET %s: %d %v", path, code, item)
			}
		}
		var mine []order
		if code := call(t, "GET", s.gw+"/api/orders/", token, ip, nil, &mine); code != 200 || mine == nil {
			t.Fatalf("GET /api/orders/: %d", code)
		}

		// JWT at the edge: no token is refused; the identity the services see comes from the
		// verified token, a client's own X-User-* headers replaced (the users service refuses
		// identity headers that contradict the token it verifies again).
		if code := call(t, "GET", s.gw+"/api/users/me", "", ip, nil, nil); code != 401 {
			t.Fatalf("profile without a token: %d, want 401", code)
		}
		var me struct{ Email, Role string }
		if code := call(t, "GET", s.gw+"/api/users/me/", token, ip, nil, &me, "X-User-Role", "admin"); code != 200 || me.Email != "ada@example.com" || me.Role != "customer" {
			t.Fatalf("profile with a forged role header: %d %+v", code, me)
		}
	}

	// The WebSocket, through the gateway, authenticated by the subprotocol.
	dialer := websocket.Dialer{Subprotocols: []string{"archway.bearer", token}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := dialer.Dial(s.ws+"/api/ws/orders", http.Header{"X-Forwarded-For": {ip}})
	if err != nil {
		t.Fatalf("websocket through the gateway: %v (%v)", err, resp)
	}
	defer ws.Close()
	events := make(chan map[string]any, 16)
	go func() {
		for {
			var m map[string]any
			if err := ws.ReadJSON(&m); err != nil {
				close(events)
				return
			}
			events <- m
		}
	}()

	var o order
	body := map[string]any{"items": []map[string]any{{"product_id": laptop.ID, "quantity": 1}, {"product_id": mouse.ID, "quantity": 2}}, "shipping_address": "1 Main St, Springfield"}
	if code := call(t, "POST", s.gw+"/api/orders", token, ip, body, &o); code != 201 || o.Status != "pending" {
		t.Fatalf("order: %d %+v", code, o)
	}
	if want := laptop.Price + 2*mouse.Price; fmt.Sprintf("%.2f", o.Total) != fmt.Sprintf("%.2f", want) {
		t.Fatalf("total %.2f, want %.2f (prices from the catalog)", o.Total, want)
	}
	card := map[string]any{"card": map[string]any{"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"}}
	var paid order
	if code := call(t, "POST", fmt.Sprintf("%s/api/orders/%d/pay", s.gw, o.ID), token, ip, card, &paid); code != 200 || paid.Status != "paid" {
		t.Fatalf("pay: %d %+v", code, paid)
	}
	deadline := time.After(10 * time.Second)
	for gotPaid := false; !gotPaid; {
		select {
		case m, ok := <-events:
			if !ok {
				t.Fatal("the WebSocket closed before reporting paid")
			}
			if m["type"] == "order_status" && m["status"] == "paid" && m["order_id"] == float64(o.ID) {
				gotPaid = true
			}
		case <-deadline:
			t.Fatal("no paid status on the WebSocket within 10s")
		}
	}
	var after product // fresh, not the edge's cached copy
	call(t, "GET", fmt.Sprintf("%s/api/products/%d", s.gw, laptop.ID), "", ip, nil, &after, "Cache-Control", "no-cache")
	if after.Inventory != laptop.Inventory-1 {
		t.Fatalf("laptop inventory %d, want %d", after.Inventory, laptop.Inventory-1)
	}

	// A declined card: 402 with the reason, the order stays pending. (The shopper's phone, with
	// its own rate-limit bucket: each order placed is also fetched at its Location.)
	const phoneIP = "198.51.100.13"
	var o2, declined order
	call(t, "POST", s.gw+"/api/orders", token, phoneIP, map[string]any{"items": []map[string]any{{"product_id": mouse.ID, "quantity": 1}}, "shipping_address": "1 Main St"}, &o2)
	card["card"].(map[string]any)["number"] = "4000000000000002"
	if code := call(t, "POST", fmt.Sprintf("%s/api/orders/%d/pay", s.gw, o2.ID), token, phoneIP, card, &declined); code != 402 || !strings.Contains(declined.Error, "declined") {
		t.Fatalf("declined card: %d %+v", code, declined)
	}
	var still order
	call(t, "GET", fmt.Sprintf("%s/api/orders/%d", s.gw, o2.ID), token, phoneIP, nil, &still)
	if still.Status != "pending" {
		t.Fatalf("after a decline the order is %q, want pending", still.Status)
	}

	// A wrong password.
	if code := call(t, "POST", s.gw+"/api/auth/login", "", ip, map[string]string{"email": "ada@example.com", "password": "wrong-password"}, nil); code != 401 {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	// Someone else's order.
	const bobIP = "198.51.100.11" // another shopper, with his own rate-limit buckets
	other := register(t, s, "bob@example.com", bobIP)
	if code := call(t, "GET", fmt.Sprintf("%s/api/orders/%d", s.gw, o.ID), other.Token, bobIP, nil, nil); code != 404 {
		t.Fatalf("another user's order: %d, want 404", code)
	}
}

// TestScarceStock: 50 shoppers order the same product, of which 10 are in stock, at once.
// Exactly 10 orders succeed, the inventory ends at 0, and no order is lost.
func TestScarceStock(t *testing.T) {
	s := startStack(t, false)
	// An admin sets the inventory of one product to 10.
	users := exec.Command(filepath.Join(binDir, "users"), "create-admin", "-email", "admin@example.com", "-password", "admin-password-1")
	users.Env = append(os.Environ(), "DATABASE_URL="+filepath.Join(s.opts.DataDir, "users.db"), "BCRYPT_COST=4")
	if out, err := users.CombinedOutput(); err != nil {
		t.Fatalf("create-admin: %v\n%s", err, out)
	}
	var admin authResp
	if code := call(t, "POST", s.gw+"/api/auth/login", "", "203.0.113.1", map[string]string{"email": "admin@example.com", "password": "admin-password-1"}, &admin); code != 200 {
		t.Fatalf("admin login: %d", code)
	}
	const productID = 4
	if code := call(t, "PUT", fmt.Sprintf("%s/api/products/%d/inventory", s.gw, productID), admin.Token, "203.0.113.1", map[string]int{"inventory": 10}, nil); code != 200 {
		t.Fatalf("set inventory: %d", code)
	}

	const shoppers = 50
	tokens := make([]string, shoppers)
	for i := range tokens {
		tokens[i] = register(t, s, fmt.Sprintf("shopper%d@example.com", i), fmt.Sprintf("198.51.100.%d", 100+i)).Token
	}
	var wg sync.WaitGroup
	codes := make([]int, shoppers)
	for i := range shoppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = call(t, "POST", s.gw+"/api/orders", tokens[i], fmt.Sprintf("198.51.100.%d", 100+i),
				map[string]any{"items": []map[string]any{{"product_id": productID, "quantity": 1}}, "shipping_address": "somewhere"}, nil)
		}()
	}
	wg.Wait()
	created, conflicts := 0, 0
	for _, c := range codes {
		switch c {
		case 201:
			created++
		case 409:
			conflicts++
		default:
			t.Errorf("unexpected status %d", c)
		}
	}
	if created != 10 || conflicts != 40 {
		t.Fatalf("%d created, %d refused; want 10 and 40", created, conflicts)
	}
	var p product
	call(t, "GET", fmt.Sprintf("%s/api/products/%d", s.gw, productID), "", "203.0.113.1", nil, &p)
	if p.Inventory != 0 {
		t.Fatalf("inventory %d, want 0", p.Inventory)
	}
	stored := 0
	for i := range shoppers {
		var mine []order
		call(t, "GET", s.gw+"/api/orders", tokens[i], fmt.Sprintf("198.51.100.%d", 100+i), nil, &mine)
		stored += len(mine)
	}
	if stored != created {
		t.Fatalf("%d orders stored, %d answered 201: an order was lost or invented", stored, created)
	}
}

// consulBinDir is binDir plus the consul binary (built by make deps into ./bin).
func consulBinDir(t *testing.T) string {
	t.Helper()
	consul := testenv.RequireBinary(t, "consul")
	link := filepath.Join(binDir, "consul")
	if _, err := os.Stat(link); err != nil {
		if err := os.Symlink(consul, link); err != nil {
			t.Fatal(err)
		}
	}
	return binDir
}

type adminView struct{ admin string }

func (s *running) gateway(t *testing.T) adminView {
	return adminView{admin: fmt.Sprintf("http://127.0.0.1:%d", s.opts.Ports.Admin)}
}

// upstreamTargets reads the targets of an upstream from the admin API.
func (a adminView) upstreamTargets(t *testing.T, s *running, name string) []string {
	t.Helper()
	var ups []struct {
		Name    string
		Targets []struct{ Addr string }
	}
	resp, err := http.Get(a.admin + "/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ups); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range ups {
		if u.Name == name {
			for _, tg := range u.Targets {
				out = append(out, tg.Addr)
			}
		}
	}
	return out
}

// TestStorefrontInBrowser runs the storefront's browser test (storefront/browser/e2e.mjs) in
// headless Chromium against a whole stack on free ports, over HTTPS: a shopper browses,
// registers, has a card declined, pays, and watches the order turn "paid" without a reload,
// through the live order status WebSocket over wss://. Screenshots land in
// storefront/test-results/e2e/.
//
// The gateway serves a TLS listener with a certificate for "localhost" from a test CA, and its
// plain listener redirects to it. Chromium trusts the CA the way a user's machine would: the CA
// is added, with certutil, to the NSS database in a throwaway HOME (~/.pki/nssdb), the trust
// store Chromium on Linux reads, so the page is verified by Chromium's ordinary certificate
// checks (chain, name, validity). --ignore-certificate-errors-spki-list would have skipped
// exactly those checks for the leaf; Node's own requests trust the CA through
// NODE_EXTRA_CA_CERTS.
func TestStorefrontInBrowser(t *testing.T) {
	chromium := testenv.RequireBinary(t, "chromium")
	node := testenv.RequireBinary(t, "node")
	certutil := testenv.RequireBinary(t, "certutil")
	root := testenv.RepoRoot()
	if _, err := os.Stat(filepath.Join(root, "storefront", "node_modules", "playwright-core")); err != nil {
		testenv.Missing(t, "the storefront's npm packages are not installed")
	}
	if _, err := os.Stat(filepath.Join(root, "storefront", "dist", "index.html")); err != nil {
		testenv.Missing(t, "the storefront is not built (make storefront-build)")
	}
	pki := t.TempDir()
	ca := listenertest.NewCA(t, pki, "storefront-test")
	leaf := ca.Issue(t, "localhost", listenertest.Options{}, "localhost")
	home := t.TempDir()
	nssdb := "sql:" + filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", nssdb, "--empty-password"},
		{"-A", "-d", nssdb, "-n", "archway storefront test CA", "-t", "C,,", "-i", ca.CertFile},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	httpsPort := testenv.FreePort(t)
	s := startStackWith(t, false, func(cfg []byte) []byte { return withTLSListener(t, cfg, httpsPort, leaf) })
	base := fmt.Sprintf("https://localhost:%d", httpsPort)

	// As a client would arrive: the plain listener sends it to HTTPS.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(strings.Replace(s.gw, "127.0.0.1", "localhost", 1) + "/orders?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || loc != base+"/orders?x=1" {
		t.Fatalf("plain listener: %d Location %q, want 308 to %s/orders?x=1", resp.StatusCode, loc, base)
	}

	cmd := exec.Command(node, "browser/e2e.mjs")
	cmd.Dir = filepath.Join(root, "storefront")
	// The script looks for Chromium where it was found here, not only at /usr/bin/chromium.
	cmd.Env = append(os.Environ(), "STOREFRONT_E2E_URL="+base, "CHROMIUM="+chromium, "HOME="+home,
		"NODE_EXTRA_CA_CERTS="+ca.CertFile, "STOREFRONT_E2E_EXPECT_HTTPS=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("browser test: %v\n%s", err, out)
	}
	// The script skips with exit status 0 (outside CI) when something it needs is missing: that
	// is a skip here too, and a failure under CI=true, never a pass.
	if skipped := regexp.MustCompile(`(?m)^SKIP: .*`).Find(out); skipped != nil {
		testenv.Missing(t, "the browser test did not run: %s", skipped)
	}
	t.Logf("%s", out)
}

// withTLSListener replaces the configuration's single plain listener with two: the plain one,
// redirecting to HTTPS, and a TLS listener on 127.0.0.1:port serving pair.
func withTLSListener(t *testing.T, cfg []byte, port int, pair listenertest.Pair) []byte {
	t.Helper()
	const plain = "  listen: \"${ARCHWAY_LISTEN:-:8080}\"\n"
	if !bytes.Contains(cfg, []byte(plain)) {
		t.Fatalf("the configuration has no line %q to replace", plain)
	}
	listeners := fmt.Sprintf(`  listeners:
    - {name: http, addr: "${ARCHWAY_LISTEN:-:8080}", redirect_https: true}
    - name: https
      addr: "127.0.0.1:%d"
      tls:
        certificates: [{cert: %q, key: %q}]
        hsts: "max-age=300"
`, port, pair.CertFile, pair.KeyFile)
	return bytes.Replace(cfg, []byte(plain), []byte(listeners), 1)
}
