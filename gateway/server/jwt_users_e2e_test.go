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

// TestJWTWithTheUsersService runs the real users service: the gateway fetches its JWKS, verifies
// the tokens it issues, and forwards the identity headers the users service itself checks
// against the token (GET /users/me refuses contradicting ones).
func TestJWTWithTheUsersService(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/archway-gateway/archway/backends/users")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	usersAddr := testenv.FreeAddr(t)
	testenv.StartProcess(t, "users", filepath.Join(dir, "users"), []string{"-addr", usersAddr, "-bcrypt-cost", "4",
		"-database-url", filepath.Join(dir, "users.db"), "-jwt-key-file", filepath.Join(dir, "key.pem")}, testenv.ProcessOptions{})
	if err := testenv.WaitTCP(usersAddr, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	echo := startUpstream(t, "echo", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
jwt: {jwks_url: "http://%s/.well-known/jwks.json", issuer: archway-users, audience: archway, algorithms: [EdDSA], leeway: 30s}
upstreams:
  users: {targets: ["%s"]}
  echo: {targets: ["%s"]}
routes:
  - name: auth
    match: {path_prefix: /api/auth}
    strip_prefix: /api
    upstream: users
  - name: users
    match: {path_prefix: /api/users}
    strip_prefix: /api
    upstream: users
    auth: {jwt: required, forward_claims: {sub: X-User-Id, email: X-User-Email, role: X-User-Role}}
  - name: whoami
    match: {path: /api/whoami}
    upstream: echo
    auth: {jwt: required, forward_claims: {sub: X-User-Id, email: X-User-Email, role: X-User-Role}}
`, usersAddr, usersAddr, echo.Addr), opt)

	r := do(t, "POST", gw.URL+"/api/auth/register", strings.NewReader(
		`{"email":"ana@example.com","password":"correct horse","firstName":"Ana","lastName":"García"}`),
		"Content-Type", "application/json")
	expectStatus(t, r, 201)
	var reg struct {
		User  struct{ ID int64 }
		Token string
	}
	if err := json.Unmarshal([]byte(r.Body), &reg); err != nil || reg.Token == "" || reg.User.ID == 0 {
		t.Fatalf("register: %s", r.Body)
	}

	expectStatus(t, get(t, gw.URL+"/api/whoami", "Authorization", "Bearer "+reg.Token, "X-User-Role", "admin"), 200)
	seen := echo.last(t)
	for h, want := range map[string]string{"X-User-Id": strconv.FormatInt(reg.User.ID, 10), "X-User-Email": "ana@example.com", "X-User-Role": "customer"} {
		if got := seen.Headers[h]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	// The users service re-checks the forwarded identity against the token: it agrees.
	r = get(t, gw.URL+"/api/users/me", "Authorization", "Bearer "+reg.Token, "X-User-Id", "1")
	expectStatus(t, r, 200)
	if !strings.Contains(r.Body, "ana@example.com") {
		t.Errorf("/users/me: %s", r.Body)
	}
	expectInvalidToken(t, get(t, gw.URL+"/api/whoami"), "Bearer")
	// Change the signature's first character: all six of its bits count, whereas the last
	// characters carry padding bits, and replacing them with "AA" left the signature unchanged
	// whenever it already ended that way (about one token in 256).
	sig := strings.LastIndexByte(reg.Token, '.') + 1
	other := byte('A')
	if reg.Token[sig] == 'A' {
		other = 'B'
	}
	tampered := reg.Token[:sig] + string(other) + reg.Token[sig+1:]
	expectInvalidToken(t, get(t, gw.URL+"/api/whoami", "Authorization", "Bearer "+tampered), `Bearer error="invalid_token"`)
}
