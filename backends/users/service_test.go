package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/server"
)

type harness struct {
	url      string
	store    *Store
	svc      *service
	issuer   *auth.Issuer
	compares atomic.Int32
}

// startUsers serves the users endpoints on a real loopback socket over a fresh SQLite database.
func startUsers(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	store, err := OpenStore(ctx, filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: issuer.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := newService(store, issuer, verifier, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: store, svc: svc, issuer: issuer}
	svc.compare = func(hash, pw []byte) error {
		h.compares.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	srv := server.New(server.Config{Service: "users", Logger: discardLogger(), Health: store.Ping})
	svc.routes(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	h.url = "http://" + ln.Addr().String()
	return h
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func call(t *testing.T, method, url, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
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
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (h *harness) register(t *testing.T, email, password string) (user map[string]any, token string) {
	t.Helper()
	r := call(t, "POST", h.url+"/auth/register",
		`{"email":"`+email+`","password":"`+password+`","firstName":"Ana","lastName":"García"}`)
	if r.status != 201 {
		t.Fatalf("register %s: %d %s", email, r.status, r.raw)
	}
	return r.body["user"].(map[string]any), r.body["token"].(string)
}

func TestRegister(t *testing.T) {
	h := startUsers(t)
	for _, tc := range []struct {
		name, body string
		want       int
		field      string
	}{
		{"ok, email normalized", `{"email":"  Ana@Example.COM ","password":"secret123","firstName":"Ana","lastName":"García"}`, 201, ""},
		{"duplicate email, other case", `{"email":"ANA@example.com","password":"secret123","firstName":"A","lastName":"B"}`, 409, "email"},
		{"missing email", `{"password":"secret123","firstName":"A","lastName":"B"}`, 400, "email"},
		{"invalid email", `{"email":"not-an-email","password":"secret123","firstName":"A","lastName":"B"}`, 400, "email"},
		{"display name is not an email", `{"email":"Ana <a@b.co>","password":"secret123","firstName":"A","lastName":"B"}`, 400, "email"},
		{"no dotted domain", `{"email":"a@localhost","password":"secret123","firstName":"A","lastName":"B"}`, 400, "email"},
		{"short password", `{"email":"b@example.com","password":"1234567","firstName":"A","lastName":"B"}`, 400, "password"},
		{"password too long for bcrypt", `{"email":"b@example.com","password":"` + strings.Repeat("p", 73) + `","firstName":"A","lastName":"B"}`, 400, "password"},
		{"missing first name", `{"email":"b@example.com","password":"secret123","lastName":"B"}`, 400, "firstName"},
		{"blank last name", `{"email":"b@example.com","password":"secret123","firstName":"A","lastName":"  "}`, 400, "lastName"},
		{"wrong type", `{"email":"b@example.com","password":12345678,"firstName":"A","lastName":"B"}`, 400, "password"},
		{"not JSON", `email=b@example.com`, 400, "body"},
		{"empty body", ``, 400, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "POST", h.url+"/auth/register", tc.body)
			if r.status != tc.want {
				t.Fatalf("status = %d; want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.field != "" && r.body["field"] != tc.field {
				t.Fatalf("field = %v; want %s: %s", r.body["field"], tc.field, r.raw)
			}
			if tc.want == 201 {
				u := r.body["user"].(map[string]any)
				if u["email"] != "ana@example.com" || u["firstName"] != "Ana" || u["lastName"] != "García" ||
					u["role"] != "customer" || u["id"] == nil || u["created_at"] == nil {
					t.Fatalf("user = %v", u)
				}
				if strings.Contains(r.raw, "$2a$") || strings.Contains(r.raw, "password") {
					t.Fatalf("response leaks the password hash: %s", r.raw)
				}
				if r.header.Get("Location") != "/users/"+strconv.Itoa(int(u["id"].(float64))) {
					t.Fatalf("Location = %q", r.header.Get("Location"))
				}
			}
		})
	}
}

func TestConcurrentDoubleRegister(t *testing.T) {
	h := startUsers(t)
	statuses := make(chan int, 10)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			statuses <- call(t, "POST", h.url+"/auth/register",
				`{"email":"race@example.com","password":"secret123","firstName":"R","lastName":"C"}`).status
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[201] != 1 || count[409] != 9 {
		t.Fatalf("statuses = %v; want one 201 and nine 409", count)
	}
}

func TestLogin(t *testing.T) {
	h := startUsers(t)
	h.register(t, "ana@example.com", "secret123")
	for _, tc := range []struct {
		name, body   string
		want         int
		wantCompares int32
	}{
		{"ok", `{"email":"ana@example.com","password":"secret123"}`, 200, 1},
		{"ok, email in other case", `{"email":"ANA@Example.com ","password":"secret123"}`, 200, 1},
		{"wrong password", `{"email":"ana@example.com","password":"secret124"}`, 401, 1},
		// An unknown email still costs one bcrypt comparison, against the dummy hash.
		{"unknown email", `{"email":"nobody@example.com","password":"secret123"}`, 401, 1},
		{"malformed email", `{"email":"nobody","password":"secret123"}`, 401, 1},
		{"overlong password", `{"email":"ana@example.com","password":"` + strings.Repeat("x", 100) + `"}`, 401, 1},
		{"missing password", `{"email":"ana@example.com"}`, 400, 0},
		{"missing email", `{"password":"secret123"}`, 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.compares.Store(0)
			r := call(t, "POST", h.url+"/auth/login", tc.body)
			if r.status != tc.want {
				t.Fatalf("status = %d; want %d: %s", r.status, tc.want, r.raw)
			}
			if got := h.compares.Load(); got != tc.wantCompares {
				t.Fatalf("bcrypt comparisons = %d; want %d", got, tc.wantCompares)
			}
			if tc.want == 401 && r.body["error"] != "Invalid credentials" {
				t.Fatalf("401 message = %v; want the same for every wrong credential", r.body["error"])
			}
			if tc.want == 200 && (r.body["token"] == "" || r.body["user"].(map[string]any)["email"] != "ana@example.com") {
				t.Fatalf("body = %s", r.raw)
			}
		})
	}
}

func TestUserEndpoints(t *testing.T) {
	h := startUsers(t)
	ana, anaToken := h.register(t, "ana@example.com", "secret123")
	bo, boToken := h.register(t, "bo@example.com", "secret123")
	admin, _, err := h.store.EnsureAdmin(context.Background(), NewUser{Email: "root@example.com", PasswordHash: []byte("x"), FirstName: "R", LastName: "T"})
	if err != nil {
		t.Fatal(err)
	}
	adminToken, _, _ := h.issuer.Issue(admin.ID, admin.Email, admin.Role)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forged, _, _ := auth.NewEd25519Issuer(otherKey, auth.IssuerConfig{}).Issue(admin.ID, admin.Email, "admin")
	id := func(u map[string]any) string { return strconv.Itoa(int(u["id"].(float64))) }

	for _, tc := range []struct {
		name, path, token string
		headers           []string
		want              int
		wantEmail         string
	}{
		{"me", "/users/me", anaToken, nil, 200, "ana@example.com"},
		{"me without token", "/users/me", "", nil, 401, ""},
		{"me with identity headers only", "/users/me", "", []string{"X-User-Id", id(ana)}, 401, ""},
		{"me with a token from another key", "/users/me", forged, nil, 401, ""},
		{"me with headers contradicting the token", "/users/me", anaToken, []string{"X-User-Id", id(bo)}, 401, ""},
		{"own record", "/users/" + id(ana), anaToken, nil, 200, "ana@example.com"},
		{"someone else's record is not found", "/users/" + id(bo), anaToken, nil, 404, ""},
		{"missing record looks the same", "/users/9999", anaToken, nil, 404, ""},
		{"admin reads anyone", "/users/" + id(bo), adminToken, nil, 200, "bo@example.com"},
		{"admin, missing record", "/users/9999", adminToken, nil, 404, ""},
		{"bad id", "/users/abc", boToken, nil, 400, ""},
		{"no token", "/users/" + id(bo), "", nil, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := tc.headers
			if tc.token != "" {
				headers = append(headers, "Authorization", "Bearer "+tc.token)
			}
			r := call(t, "GET", h.url+tc.path, "", headers...)
			if r.status != tc.want {
				t.Fatalf("status = %d; want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.wantEmail != "" && r.body["email"] != tc.wantEmail {
				t.Fatalf("body = %s", r.raw)
			}
			if r.status == 200 {
				for _, k := range []string{"id", "email", "firstName", "lastName", "role", "created_at"} {
					if _, ok := r.body[k]; !ok {
						t.Fatalf("user JSON lacks %s: %s", k, r.raw)
					}
				}
				if len(r.body) != 6 {
					t.Fatalf("user JSON has extra fields: %s", r.raw)
				}
			}
		})
	}
}

// TestAuthVerify: the endpoint a gateway's forward_auth asks answers 204 with the token's
// identity for every method, and 401 without a valid token.
func TestAuthVerify(t *testing.T) {
	h := startUsers(t)
	user, token := h.register(t, "ana@example.com", "secret123")
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		r := call(t, method, h.url+"/auth/verify", "", "Authorization", "Bearer "+token)
		if r.status != 204 || r.header.Get("X-User-Id") != strconv.Itoa(int(user["id"].(float64))) ||
			r.header.Get("X-User-Email") != "ana@example.com" || r.header.Get("X-User-Role") != "customer" {
			t.Fatalf("%s: %d %v", method, r.status, r.header)
		}
	}
	for name, headers := range map[string][]string{
		"no token":      nil,
		"bad token":     {"Authorization", "Bearer " + token[:len(token)-4] + "AAAA"},
		"identity only": {"X-User-Id", "1"},
	} {
		if r := call(t, "GET", h.url+"/auth/verify", "", headers...); r.status != 401 || r.header.Get("X-User-Id") != "" {
			t.Errorf("%s: %d %v", name, r.status, r.header)
		}
	}
}

// TestIssuedTokensVerifyThroughJWKS is the path every other service takes: a token from
// /auth/login, keys from /.well-known/jwks.json over HTTP.
func TestIssuedTokensVerifyThroughJWKS(t *testing.T) {
	h := startUsers(t)
	_, token := h.register(t, "ana@example.com", "secret123")
	jwks := call(t, "GET", h.url+"/.well-known/jwks.json", "")
	keys := jwks.body["keys"].([]any)
	if jwks.status != 200 || len(keys) != 1 || keys[0].(map[string]any)["kty"] != "OKP" ||
		keys[0].(map[string]any)["crv"] != "Ed25519" || !strings.HasPrefix(jwks.header.Get("Cache-Control"), "public") {
		t.Fatalf("jwks = %d %s", jwks.status, jwks.raw)
	}
	published, err := auth.NewJWKS(t.Context(), h.url+"/.well-known/jwks.json", auth.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: published})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifier.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("token from /auth/register does not verify through the JWKS: %v", err)
	}
	if claims.Email != "ana@example.com" || claims.Role != "customer" || claims.Audience[0] != "archway" {
		t.Fatalf("claims = %+v", claims)
	}
	login := call(t, "POST", h.url+"/auth/login", `{"email":"ana@example.com","password":"secret123"}`)
	if _, err := verifier.Verify(context.Background(), login.body["token"].(string)); err != nil {
		t.Fatalf("token from /auth/login: %v", err)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := startUsers(t)
	if r := call(t, "GET", h.url+"/health", ""); r.status != 200 {
		t.Fatalf("health = %d %s", r.status, r.raw)
	}
	call(t, "GET", h.url+"/users/12345", "")
	m := call(t, "GET", h.url+"/metrics", "")
	if !strings.Contains(m.raw, `route="/users/{id}"`) || strings.Contains(m.raw, "12345") {
		t.Fatalf("metrics do not label by route pattern:\n%s", m.raw)
	}
	h.store.Close() // the database goes away
	if r := call(t, "GET", h.url+"/health", ""); r.status != 503 || r.body["request_id"] == nil {
		t.Fatalf("health with the database closed = %d %s", r.status, r.raw)
	}
}
