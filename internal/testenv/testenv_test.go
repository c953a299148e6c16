package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func redisPing(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestRedisStartsKillsAndRestarts(t *testing.T) {
	r := StartRedis(t)
	if got, err := redisPing(r.Addr); err != nil || got != "+PONG" {
		t.Fatalf("PING = %q, %v; want +PONG", got, err)
	}
	r.Kill()
	if _, err := redisPing(r.Addr); err == nil {
		t.Fatal("redis still answers after Kill")
	}
	r.Restart(t)
	if got, err := redisPing(r.Addr); err != nil || got != "+PONG" {
		t.Fatalf("PING after restart = %q, %v; want +PONG", got, err)
	}
}

func TestPostgresStarts(t *testing.T) {
	pg := StartPostgres(t)
	if !strings.HasPrefix(pg.DSN, "postgres://") {
		t.Fatalf("DSN = %q", pg.DSN)
	}
	if pg.Port != 0 {
		if err := WaitTCP(net.JoinHostPort(pg.host, strconv.Itoa(pg.Port)), time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMissingSkipsLocallyAndFailsUnderCI runs this test binary again with a test that calls
// Missing: without CI it must skip, with CI=true it must fail.
func TestMissingSkipsLocallyAndFailsUnderCI(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		Missing(t, "archway-no-such-binary is not installed")
		return
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantText string
	}{
		{ci: "", wantFail: false, wantText: "SKIP"},
		{ci: "true", wantFail: true, wantText: "CI=true: archway-no-such-binary is not installed (run `make deps`)"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingSkipsLocallyAndFailsUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("CI=%q: failed=%v, want %v\n%s", tc.ci, failed, tc.wantFail, out)
		}
		if !strings.Contains(string(out), tc.wantText) {
			t.Errorf("CI=%q: output lacks %q:\n%s", tc.ci, tc.wantText, out)
		}
	}
}

func TestConsulStartsKillsAndRestarts(t *testing.T) {
	c := StartConsul(t)
	var leader string
	if err := getJSON(http.DefaultClient, c.URL()+"/v1/status/leader", &leader); err != nil || leader == "" {
		t.Fatalf("leader = %q, %v; want a leader", leader, err)
	}
	// A registration through the agent, to show that a restart loses it.
	req, _ := http.NewRequest(http.MethodPut, c.URL()+"/v1/agent/service/register",
		strings.NewReader(`{"Name":"probe","ID":"probe-1","Port":1234}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %s", resp.Status)
	}
	var services map[string]any
	if err := getJSON(http.DefaultClient, c.URL()+"/v1/agent/services", &services); err != nil || services["probe-1"] == nil {
		t.Fatalf("agent services = %v, %v; want probe-1", services, err)
	}

	c.Kill()
	if err := getJSON(http.DefaultClient, c.URL()+"/v1/status/leader", &leader); err == nil {
		t.Fatal("consul still answers after Kill")
	}
	c.Restart(t)
	services = nil
	if err := getJSON(http.DefaultClient, c.URL()+"/v1/agent/services", &services); err != nil {
		t.Fatal(err)
	}
	if _, ok := services["probe-1"]; ok {
		t.Fatal("registration survived a restart; dev agents must start empty")
	}
}

func TestPostgresCreateDatabaseIsFreshAndDropped(t *testing.T) {
	pg := StartPostgres(t)
	var dsn string
	t.Run("create", func(t *testing.T) {
		dsn = pg.CreateDatabase(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
			t.Fatal(err)
		}
	})
	// The subtest's cleanup dropped the database, even though nothing closed it explicitly.
	if _, err := pgx.Connect(context.Background(), dsn); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("connect after cleanup: err = %v; want database does not exist", err)
	}
}

// TestFreePortsStayOutOfTheEphemeralRange: test ports come from below the range the kernel
// takes outgoing connections' local ports from, so no connection can take one between
// FreePorts and the bind; they are distinct and free.
func TestFreePortsStayOutOfTheEphemeralRange(t *testing.T) {
	lo, hi := testPorts()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first int
		if _, err := fmt.Sscan(string(b), &first); err != nil {
			t.Fatal(err)
		}
		switch {
		case first > 11000 && (lo != 10000 || hi != first-1):
			t.Fatalf("test ports %d-%d, want 10000-%d below the ephemeral range", lo, hi, first-1)
		case first <= 11000 && lo != 0:
			t.Fatalf("test ports %d-%d with an ephemeral range from %d: want the kernel's choice", lo, hi, first)
		}
	}
	ports := FreePorts(t, 20)
	seen := map[int]bool{}
	for _, p := range ports {
		if (lo != 0 && (p < lo || p > hi)) || seen[p] {
			t.Errorf("port %d: outside %d-%d or repeated in %v", p, lo, hi, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		l.Close()
	}
}

// TestServeTCPEndsItsHandlersAtCleanup: a handler blocked reading a connection its client keeps
// open ends when the test that started the server does, before its cleanup returns.
func TestServeTCPEndsItsHandlersAtCleanup(t *testing.T) {
	ended := make(chan struct{})
	var client net.Conn
	t.Run("serve", func(t *testing.T) {
		addr := ServeTCP(t, func(c net.Conn) {
			defer close(ended)
			_, _ = c.Write([]byte("hello"))
			_, _ = c.Read(make([]byte, 1)) // the client never sends
		})
		var err error
		if client, err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(client, got); err != nil || string(got) != "hello" {
			t.Fatalf("read %q, %v", got, err)
		}
	})
	defer client.Close()
	select {
	case <-ended:
	default:
		t.Fatal("the handler was still running after the test's cleanup")
	}
}
