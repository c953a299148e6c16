package testenv

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// Redis is a real redis-server on a loopback port, without persistence.
type Redis struct {
	Addr string // host:port
	Port int
	proc *Process
}

// StartRedis starts redis-server on a free loopback port and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := RequireBinary(t, "redis-server")
	dir := shortTempDir(t, "redis")
	for attempt := 0; ; attempt++ {
		port := FreePort(t)
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "no", "--loglevel", "warning",
		}
		p := StartProcess(t, "redis-server", bin, args, ProcessOptions{})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := WaitTCP(addr, 10*time.Second); err != nil {
			p.Stop()
			if attempt < 3 {
				continue // lost the port to someone else; try another
			}
			t.Fatalf("testenv: redis-server did not start: %v\n%s", err, trimOutput(p.Output()))
		}
		return &Redis{Addr: addr, Port: port, proc: p}
	}
}

// Kill stops the server abruptly, as a crash would.
func (r *Redis) Kill() { r.proc.Kill() }

// Restart starts the server again on the same port and waits until it accepts connections.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.proc.Restart()
	if err := WaitTCP(r.Addr, 10*time.Second); err != nil {
		t.Fatalf("testenv: redis-server did not restart: %v", err)
	}
}

// Process returns the underlying process, for signals (SIGSTOP to simulate a hung server).
func (r *Redis) Process() *Process { return r.proc }
