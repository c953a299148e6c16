//go:build linux

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

// threadSlacks reads the timer slack of every thread of process pid.
func threadSlacks(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, task := range tasks {
		data, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
		if err != nil {
			continue // the thread ended
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[task.Name()] = n
	}
	return out
}

// TestTimerSlackReachesEveryThread: the gateway sets its timer slack (1ms unless told otherwise)
// on every thread it runs, the Go runtime's monitor thread included, which exists before main
// runs; -timer-slack sets another value, and 0 leaves the inherited one.
func TestTimerSlackReachesEveryThread(t *testing.T) {
	inherited := threadSlacks(t, os.Getpid())[strconv.Itoa(os.Getpid())]
	for _, tc := range []struct {
		name string
		args []string
		want int64
	}{
		{"default", nil, 4_000_000},
		{"flag", []string{"-timer-slack", "250us"}, 250_000},
		{"off", []string{"-timer-slack", "0"}, inherited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
			cfg := writeConfig(t, baseConfig(addr, admin, "127.0.0.1:1", "1s"))
			cmd := exec.Command(gatewayBin, append([]string{"-config", cfg}, tc.args...)...)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
				t.Fatalf("gateway did not start: %v\n%s", err, stderr.String())
			}
			if strings.Contains(stderr.String(), "timer slack not set") {
				t.Fatalf("the gateway could not set its timer slack:\n%s", stderr.String())
			}
			slacks := threadSlacks(t, cmd.Process.Pid)
			if len(slacks) < 3 {
				t.Fatalf("only %d threads seen", len(slacks))
			}
			for tid, got := range slacks {
				if got != tc.want {
					t.Errorf("thread %s: timer slack %d ns, want %d (all: %v)", tid, got, tc.want, slacks)
				}
			}
		})
	}
}

func TestTimerSlackFlagRefusesNonsense(t *testing.T) {
	for _, v := range []string{"soon", "-1ms"} {
		out, err := exec.Command(gatewayBin, "-timer-slack", v, "-config", "/nonexistent.yaml").CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "invalid -timer-slack") {
			t.Errorf("-timer-slack %s: exit %d, want 2 with a message\n%s", v, code, out)
		}
	}
}
