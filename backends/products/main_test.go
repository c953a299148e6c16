package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// TestTwoInstancesShareOneDatabase starts two real products processes at once on one SQLite
// file, as the stack runs :3002 and :3012: the catalog is seeded once, both serve it, and
// SIGTERM stops each cleanly.
func TestTwoInstancesShareOneDatabase(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "products")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "data", "products.db")
	var procs []*testenv.Process
	var addrs []string
	for i := range 2 {
		addr := testenv.FreeAddr(t)
		addrs = append(addrs, addr)
		procs = append(procs, testenv.StartProcess(t, "products-"+string(rune('a'+i)), bin,
			[]string{"-addr", addr, "-database-url", db, "-jwt-secret", strings.Repeat("s", 32)}, testenv.ProcessOptions{}))
	}
	for _, addr := range addrs {
		if err := testenv.WaitTCP(addr, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, addr := range addrs {
		resp, err := http.Get("http://" + addr + "/products?limit=100")
		if err != nil {
			t.Fatal(err)
		}
		var products []Product
		_ = json.NewDecoder(resp.Body).Decode(&products)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(products) != 10 || resp.Header.Get("X-Total-Count") != "10" {
			t.Fatalf("%s: %d, %d products, total %s; want the catalog once", addr, resp.StatusCode, len(products), resp.Header.Get("X-Total-Count"))
		}
	}
	for _, p := range procs {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Exited():
		case <-time.After(15 * time.Second):
			t.Fatal("no exit within 15 s of SIGTERM")
		}
		if code := p.ExitCode(); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Output())
		}
		if !strings.Contains(p.Output(), `"msg":"shutting down"`) {
			t.Fatalf("no shutdown log line:\n%s", p.Output())
		}
	}
}

func TestSeedCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "products.db")
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"seed", "-database-url", db}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "inserted 10") {
		t.Fatalf("seed: exit %d, %q %q", code, out.String(), errOut.String())
	}
	st := openStore(t, db)
	if _, err := st.SetInventory(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(ctx, []string{"seed", "-database-url", db, "-reset=false"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "inserted 0") {
		t.Fatalf("seed -reset=false: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"seed", "-database-url", db}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "inserted 10") {
		t.Fatalf("reseed: exit %d, %q", code, out.String())
	}
	if p, _ := st.Get(ctx, 1); p.Inventory != 50 {
		t.Fatalf("inventory after reseed = %d; want 50", p.Inventory)
	}
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"-jwt-secret", "short"}, "at least 32 bytes", 1},
		{[]string{"-log-level", "loud"}, "log level", 1},
		{[]string{"-events-secret", "short"}, "events secret is 5 bytes", 1},
		{[]string{"-nope"}, "flag provided but not defined", 2},
		{[]string{"serve"}, "unknown command", 2},
		{[]string{"seed", "-nope"}, "flag provided but not defined", 2},
	} {
		var errOut bytes.Buffer
		args := append([]string{}, tc.args...)
		if tc.args[0] != "seed" {
			args = append([]string{"-addr", "127.0.0.1:0", "-database-url", filepath.Join(dir, "p.db")}, args...)
		}
		if code := run(context.Background(), args, io.Discard, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
