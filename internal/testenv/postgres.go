package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Postgres is a real PostgreSQL server for one test (or one package, see SharedPostgres).
type Postgres struct {
	// DSN connects as the superuser to the database "postgres"; use CreateDatabase for a fresh
	// database per test.
	DSN  string
	Port int
	host string
	proc *Process
}

// StartPostgres starts a throwaway PostgreSQL cluster on a free loopback port: initdb into a
// temporary directory, then postgres itself. When TEST_DATABASE_URL is set it is used instead
// and nothing is started. PostgreSQL refuses to run as root, so under root the cluster runs as
// the "postgres" system user.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	if dsn := os.Getenv("TEST_DATABASE_URL"); dsn != "" {
		return &Postgres{DSN: dsn}
	}
	initdb := RequireBinary(t, "initdb")
	postgres := RequireBinary(t, "postgres")

	dir := shortTempDir(t, "pg")
	dataDir := filepath.Join(dir, "data")
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Missing(t, "running as root and there is no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testenv: chown %s: %v", dir, err)
		}
	}

	cmd := exec.Command(initdb, "-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, trimOutput(string(out)))
	}

	for attempt := 0; ; attempt++ {
		port := FreePort(t)
		args := []string{
			"-D", dataDir, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200",
		}
		p := StartProcess(t, "postgres", postgres, args, ProcessOptions{Cred: cred})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitPostgres(p, addr, 30*time.Second); err != nil {
			p.Stop()
			if attempt < 3 {
				continue
			}
			t.Fatalf("testenv: postgres did not start: %v\n%s", err, trimOutput(p.Output()))
		}
		return &Postgres{
			DSN:  fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr),
			Port: port, host: "127.0.0.1", proc: p,
		}
	}
}

func waitPostgres(p *Process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("postgres exited")
		default:
		}
		// Accepting TCP is not enough: the server answers "starting up" for a while. pg_isready
		// would tell, but a plain TCP probe plus the log line is enough and needs no client.
		if WaitTCP(addr, 100*time.Millisecond) == nil && containsReady(p.Output()) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsReady(out string) bool {
	return strings.Contains(out, "database system is ready to accept connections")
}

// Kill stops the server abruptly.
func (pg *Postgres) Kill() {
	if pg.proc != nil {
		pg.proc.Kill()
	}
}
