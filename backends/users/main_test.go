package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func TestCreateAdminThenLogin(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.db")
	ctx := context.Background()
	var out, errOut bytes.Buffer
	for _, want := range []string{"created", "promoted"} {
		out.Reset()
		code := run(ctx, []string{"create-admin", "-database-url", db, "-bcrypt-cost", "4",
			"-email", "Root@Example.com", "-password", "rootpass1"}, &out, &errOut)
		if code != 0 {
			t.Fatalf("create-admin exit %d: %s", code, errOut.String())
		}
		var res struct {
			Action string
			User   User
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Action != want || res.User.Role != "admin" || res.User.Email != "root@example.com" {
			t.Fatalf("output %q: %v", out.String(), err)
		}
	}
	for _, args := range [][]string{
		{"create-admin", "-database-url", db, "-email", "root@example.com", "-password", "short"},
		{"create-admin", "-database-url", db, "-password", "rootpass1"},
		{"create-admin", "-nope"},
	} {
		errOut.Reset()
		if code := run(ctx, args, &out, &errOut); code != 2 {
			t.Fatalf("%v: exit %d; want 2 (%s)", args, code, errOut.String())
		}
		if args[len(args)-1] == "short" && !strings.Contains(errOut.String(), "-password: must be at least 8 characters") {
			t.Fatalf("short password: stderr %q does not name the flag", errOut.String())
		}
	}

	// The binary's serve path on the same database: the admin logs in and gets an admin token.
	addr := testenv.FreeAddr(t)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- run(sctx, []string{"-addr", addr, "-database-url", db, "-bcrypt-cost", "4",
			"-jwt-key-file", filepath.Join(dir, "key.pem")}, io.Discard, &errOut)
	}()
	if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/auth/login", "application/json",
		strings.NewReader(`{"email":"root@example.com","password":"rootpass1"}`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ User User }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.User.Role != "admin" {
		t.Fatalf("admin login = %d %+v", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop after its context was cancelled")
	}
	if st, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", st, err)
	}
}

func TestServeRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-jwt-secret", "too-short"}, want: "at least 32 bytes"},
		{args: []string{"-bcrypt-cost", "99"}, want: "bcrypt cost"},
		{args: []string{"-log-level", "loud"}, want: "log level"},
		{args: []string{"extra"}, want: "unknown command"},
	} {
		var errOut bytes.Buffer
		args := append([]string{"-addr", "127.0.0.1:0", "-database-url", filepath.Join(dir, "u.db"),
			"-jwt-key-file", filepath.Join(dir, "k.pem")}, tc.args...)
		if code := run(context.Background(), args, io.Discard, &errOut); code == 0 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}

func TestTokensHS256Mode(t *testing.T) {
	secret := strings.Repeat("k", 32)
	issuer, verifier, err := tokens(&settings{secret: secret, issuer: "archway-users", audience: "archway", tokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if issuer.Algorithm() != "HS256" || len(issuer.JWKS().Keys) != 0 {
		t.Fatalf("alg %s, %d published keys; want HS256 and none", issuer.Algorithm(), len(issuer.JWKS().Keys))
	}
	token, _, _ := issuer.Issue(1, "a@b.co", "customer")
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
}

// TestInstallKeyReplicasShareOneKey: two replicas whose init step installs the same Secret serve
// the same key set, so a token one issues verifies at the other's verifiers; the step's errors
// exit non-zero and name the problem.
func TestInstallKeyReplicasShareOneKey(t *testing.T) {
	openssl := testenv.RequireBinary(t, "openssl")
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret", "users-ed25519.pem")
	if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", secret).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v: %s", err, out)
	}
	if err := os.Chmod(secret, 0o440); err != nil { // what the kubelet makes of a Secret with fsGroup
		t.Fatal(err)
	}
	ctx := context.Background()
	var jwks []string
	for i := range 2 {
		replica := filepath.Join(dir, fmt.Sprintf("replica-%d", i))
		keyFile := filepath.Join(replica, "keys", "users-ed25519.pem")
		var out, errOut bytes.Buffer
		if code := run(ctx, []string{"install-key", "-from", secret, "-jwt-key-file", keyFile}, &out, &errOut); code != 0 {
			t.Fatalf("install-key exit %d: %s", code, errOut.String())
		}
		if !strings.Contains(out.String(), keyFile) {
			t.Errorf("install-key printed %q; want the installed path", out.String())
		}
		addr := testenv.FreeAddr(t)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() {
			done <- run(sctx, []string{"-addr", addr, "-database-url", filepath.Join(replica, "users.db"),
				"-bcrypt-cost", "4", "-jwt-key-file", keyFile}, io.Discard, &errOut)
		}()
		if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + addr + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		jwks = append(jwks, string(body))
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("replica %d exit %d: %s", i, code, errOut.String())
		}
	}
	if jwks[0] != jwks[1] || !strings.Contains(jwks[0], `"kid"`) {
		t.Fatalf("replicas publish different key sets:\n%s\n%s", jwks[0], jwks[1])
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"install-key", "-jwt-key-file", filepath.Join(dir, "k.pem")}, 2, "-from"},
		{[]string{"install-key", "-from", filepath.Join(dir, "missing.pem"), "-jwt-key-file", filepath.Join(dir, "k.pem")}, 1, "read key"},
	} {
		var errOut bytes.Buffer
		if code := run(ctx, tc.args, io.Discard, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
