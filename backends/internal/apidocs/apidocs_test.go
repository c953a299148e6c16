package apidocs

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// example is one endpoint section of docs/api.md: its heading, its sh block and the first
// status of its table (the success case the block demonstrates).
type example struct {
	heading string
	script  string
	status  int
}

var (
	endpointHeading = regexp.MustCompile(`^### (GET|POST|PUT|DELETE|PATCH) (/api/\S+)$`)
	statusRow       = regexp.MustCompile(`^\| (\d{3}) \|`)
)

func parseExamples(t *testing.T, path string) []example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []example
	var cur *example
	inSh, blocks := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			if cur != nil && blocks != 1 {
				t.Errorf("%s: %d sh blocks; want exactly 1", cur.heading, blocks)
			}
			cur, blocks = nil, 0
			if endpointHeading.MatchString(line) {
				out = append(out, example{heading: strings.TrimPrefix(line, "### ")})
				cur = &out[len(out)-1]
			}
		case cur == nil:
		case line == "```sh":
			inSh = true
			blocks++
		case inSh && line == "```":
			inSh = false
		case inSh:
			cur.script += line + "\n"
		case cur.status == 0 && statusRow.MatchString(line):
			cur.status, _ = strconv.Atoi(statusRow.FindStringSubmatch(line)[1])
		}
	}
	if cur != nil && blocks != 1 {
		t.Errorf("%s: %d sh blocks; want exactly 1", cur.heading, blocks)
	}
	return out
}

// gateway stands in for the gateway's routes: /api/auth/* and /api/users/* to users,
// /api/products/* to products, /api/orders/* and /api/ws/orders (a WebSocket) to orders,
// /api/payments/* to payments; /api stripped, X-Forwarded-Prefix set.
func gateway(t *testing.T, services map[string]string) string {
	targets := map[string]*url.URL{}
	for name, raw := range services {
		targets[name], _ = url.Parse(raw)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		path := strings.TrimPrefix(r.In.URL.Path, "/api")
		target := targets["users"]
		for prefix, name := range map[string]string{"/products": "products", "/orders": "orders",
			"/ws/orders": "orders", "/payments": "payments"} {
			if path == prefix || strings.HasPrefix(path, prefix+"/") {
				target = targets[name]
			}
		}
		r.SetURL(target)
		r.Out.URL.Path, r.Out.URL.RawPath = path, ""
		r.Out.Header.Set("X-Forwarded-Prefix", "/api")
	}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL + "/api"
}

func TestAPIDocExamples(t *testing.T) {
	curl := testenv.RequireBinary(t, "curl")
	root := testenv.RepoRoot()
	examples := parseExamples(t, filepath.Join(root, "docs", "api.md"))
	documented := map[string]bool{}
	for _, ex := range examples {
		documented[ex.heading] = true
	}
	for _, want := range []string{
		"POST /api/auth/register", "POST /api/auth/login", "GET /api/users/me", "GET /api/users/{id}",
		"GET /api/.well-known/jwks.json", "GET /api/products", "GET /api/products/{id}", "POST /api/products",
		"PUT /api/products/{id}", "PUT /api/products/{id}/inventory", "POST /api/products/{id}/reserve",
		"POST /api/products/{id}/release", "POST /api/orders", "GET /api/orders", "GET /api/orders/{id}",
		"POST /api/orders/{id}/pay", "PUT /api/orders/{id}/status", "GET /api/ws/orders", "POST /api/payments",
		"GET /api/payments/{id}",
	} {
		if !documented[want] {
			t.Errorf("docs/api.md does not document %s", want)
		}
	}

	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/",
		"github.com/archway-gateway/archway/backends/users", "github.com/archway-gateway/archway/backends/products",
		"github.com/archway-gateway/archway/backends/orders", "github.com/archway-gateway/archway/backends/payments")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	usersAddr, productsAddr, ordersAddr, paymentsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	usersDB := filepath.Join(dir, "users.db")
	common := []string{"-bcrypt-cost", "4", "-database-url", usersDB, "-jwt-key-file", filepath.Join(dir, "key.pem")}
	// users first: products fetches its keys at start (it would retry, but the test should not
	// depend on the retry's timing).
	testenv.StartProcess(t, "users", filepath.Join(dir, "users"), append([]string{"-addr", usersAddr}, common...), testenv.ProcessOptions{})
	if err := testenv.WaitTCP(usersAddr, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	jwks := "http://" + usersAddr + "/.well-known/jwks.json"
	testenv.StartProcess(t, "products", filepath.Join(dir, "products"), []string{"-addr", productsAddr,
		"-database-url", filepath.Join(dir, "products.db"), "-jwks-url", jwks}, testenv.ProcessOptions{})
	testenv.StartProcess(t, "payments", filepath.Join(dir, "payments"), []string{"-addr", paymentsAddr,
		"-database-url", filepath.Join(dir, "payments.db"), "-jwks-url", jwks}, testenv.ProcessOptions{})
	testenv.StartProcess(t, "orders", filepath.Join(dir, "orders"), []string{"-addr", ordersAddr,
		"-database-url", filepath.Join(dir, "orders.db"), "-jwks-url", jwks,
		"-products-url", "http://" + productsAddr, "-payments-url", "http://" + paymentsAddr}, testenv.ProcessOptions{})
	for _, addr := range []string{productsAddr, paymentsAddr, ordersAddr} {
		if err := testenv.WaitTCP(addr, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(filepath.Join(dir, "users"), append([]string{"create-admin",
		"-email", "admin@example.com", "-password", "admin-pass-1"}, common...)...).CombinedOutput(); err != nil {
		t.Fatalf("create-admin: %v\n%s", err, out)
	}
	api := gateway(t, map[string]string{"users": "http://" + usersAddr, "products": "http://" + productsAddr,
		"orders": "http://" + ordersAddr, "payments": "http://" + paymentsAddr})
	env := map[string]string{"API": api, "USERS_URL": "http://" + usersAddr}
	env["ADMIN_TOKEN"] = login(t, api, `{"email":"admin@example.com","password":"admin-pass-1"}`)

	for _, ex := range examples {
		t.Run(ex.heading, func(t *testing.T) {
			if ex.status == 0 {
				t.Fatal("no status table")
			}
			// curl is wrapped to print the status on a last line of its own.
			script := `curl() { command "$CURL" -w '\n%{http_code}' "$@"; }` + "\n" + ex.script
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CURL=" + curl}
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("example failed: %v\n%s\n%s", err, ex.script, out)
			}
			text := strings.TrimRight(string(out), "\n")
			cut := strings.LastIndexByte(text, '\n')
			status, _ := strconv.Atoi(text[cut+1:])
			if status != ex.status {
				t.Fatalf("status %d; the docs say %d\n%s\n%s", status, ex.status, ex.script, out)
			}
			if ex.heading == "POST /api/auth/login" {
				var body struct{ Token string }
				if err := json.Unmarshal([]byte(text[:cut]), &body); err != nil || body.Token == "" {
					t.Fatalf("login example printed no token: %s", out)
				}
				env["TOKEN"] = body.Token
			}
		})
	}
}

func login(t *testing.T, api, body string) string {
	t.Helper()
	resp, err := http.Post(api+"/auth/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return out.Token
}
