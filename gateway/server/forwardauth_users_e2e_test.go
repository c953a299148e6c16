package server_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// TestForwardAuthWithTheUsersService: the users service is the auth service. Its /auth/verify
// answers for the token; the gateway lets the request through with the identity the service
// gave (whatever the client claimed), relays the service's 401, and answers 503 once the
// service is gone (or lets the request through, on a fail-open route).
func TestForwardAuthWithTheUsersService(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/archway-gateway/archway/backends/users")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	usersAddr := testenv.FreeAddr(t)
	users := testenv.StartProcess(t, "users", filepath.Join(dir, "users"), []string{"-addr", usersAddr, "-bcrypt-cost", "4",
		"-database-url", filepath.Join(dir, "users.db"), "-jwt-key-file", filepath.Join(dir, "key.pem")}, testenv.ProcessOptions{})
	if err := testenv.WaitTCP(usersAddr, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	orders := startUpstream(t, "orders", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  users: {targets: ["%[1]s"]}
  orders: {targets: ["%[2]s"]}
routes:
  - name: auth
    match: {path_prefix: /api/auth}
    strip_prefix: /api
    upstream: users
  - name: orders
    match: {path_prefix: /api/orders}
    upstream: orders
    forward_auth:
      url: http://%[1]s/auth/verify
      response_headers: [X-User-Id, X-User-Role]
      timeout: 5s
  - name: catalogue
    match: {path_prefix: /api/catalogue}
    upstream: orders
    forward_auth: {url: "http://%[1]s/auth/verify", response_headers: [X-User-Id], on_error: allow}
`, usersAddr, orders.Addr), opt)

	r := do(t, "POST", gw.URL+"/api/auth/register", strings.NewReader(
		`{"email":"ana@example.com","password":"correct horse","firstName":"Ana","lastName":"García"}`),
		"Content-Type", "application/json")
	expectStatus(t, r, 201)
	var reg struct {
		User  struct{ ID int64 }
		Token string
	}
	if err := json.Unmarshal([]byte(r.Body), &reg); err != nil || reg.Token == "" {
		t.Fatalf("register: %s", r.Body)
	}
	id := strconv.FormatInt(reg.User.ID, 10)

	// Allowed, for GET and POST alike: the identity is the users service's, never the client's.
	for _, method := range []string{"GET", "POST"} {
		r = do(t, method, gw.URL+"/api/orders", nil, "Authorization", "Bearer "+reg.Token, "X-User-Id", "999", "X-User-Role", "admin")
		expectStatus(t, r, 200)
		seen := orders.last(t)
		if got := seen.Headers["X-User-Id"]; len(got) != 1 || got[0] != id {
			t.Errorf("%s: upstream X-User-Id %q, want [%s]", method, got, id)
		}
		if got := seen.Headers["X-User-Role"]; len(got) != 1 || got[0] != "customer" {
			t.Errorf("%s: upstream X-User-Role %q, want [customer]", method, got)
		}
	}

	// Refused: the users service's own 401 reaches the client; the upstream sees nothing.
	before := orders.count()
	for name, headers := range map[string][]string{
		"no token":       {"X-User-Id", id},
		"tampered token": {"Authorization", "Bearer " + reg.Token[:len(reg.Token)-4] + "AAAA"},
	} {
		r = get(t, gw.URL+"/api/orders", headers...)
		expectStatus(t, r, 401)
		if !strings.Contains(r.Body, "token") {
			t.Errorf("%s: 401 body %q is not the users service's", name, r.Body)
		}
	}
	if orders.count() != before {
		t.Error("a refused request reached the upstream")
	}

	// The users service goes away: 503 on the checked route, fail-open on the other.
	users.Stop()
	r = get(t, gw.URL+"/api/orders", "Authorization", "Bearer "+reg.Token)
	expectStatus(t, r, 503)
	if !strings.Contains(r.Body, `"error":"auth service unavailable"`) || strings.Contains(r.Body, usersAddr) {
		t.Errorf("503 body %q", r.Body)
	}
	r = get(t, gw.URL+"/api/catalogue", "Authorization", "Bearer "+reg.Token, "X-User-Id", "999")
	expectStatus(t, r, 200)
	if got := orders.last(t).Headers["X-User-Id"]; len(got) != 0 {
		t.Errorf("fail-open forwarded X-User-Id %q; a client's claim must not pass", got)
	}
}
