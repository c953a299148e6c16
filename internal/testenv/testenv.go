// Package testenv starts real external components (redis-server, PostgreSQL, Consul, nginx, ...)
// on free loopback ports for tests, and stops them when the test ends.
//
// A test that needs a binary which is not installed skips with a message naming `make deps`;
// when the environment variable CI is "true" that skip is a failure instead, so CI can never pass
// by silently testing less.
//
// Every helper registers its cleanup with t.Cleanup; callers never stop what they did not start
// by hand. The helpers are safe to call from parallel tests.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the suite runs under CI (CI=true), where missing binaries fail tests.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing reports a missing prerequisite: a skip that names `make deps`, or a failure under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (run `make deps`)"
	if InCI() {
		t.Fatalf("CI=true: %s", msg)
	}
	t.Skip(msg)
}

// RepoRoot returns the root of the repository: the nearest parent of the working directory
// holding the project's go.mod. Tests run in their package directory, so this finds ./bin and
// shared files wherever the test lives.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(fmt.Sprintf("testenv: working directory: %v", err))
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("module github.com/archway-gateway/archway\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testenv: repository root (go.mod of github.com/archway-gateway/archway) not found")
		}
		dir = parent
	}
}

// LookBinary finds an executable: the repository's ./bin first (tools built by `make deps`),
// then PATH, then the system directories Debian installs daemons into.
func LookBinary(name string) (string, bool) {
	candidates := []string{filepath.Join(RepoRoot(), "bin", name)}
	if p, err := exec.LookPath(name); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/sbin/"+name, "/usr/local/sbin/"+name)
	if pgBin := postgresBinDir(); pgBin != "" {
		candidates = append(candidates, filepath.Join(pgBin, name))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return c, true
		}
	}
	return "", false
}

// RequireBinary returns the path of the named executable, or skips (fails under CI) naming
// `make deps` when it is not installed.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, ok := LookBinary(name)
	if !ok {
		Missing(t, "%s is not installed", name)
	}
	return p
}

func postgresBinDir() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if len(matches) == 0 {
		return ""
	}
	return matches[len(matches)-1]
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. There is an unavoidable
// window between this call and the caller's bind; the helpers below retry on a lost race. The
// port comes from below the kernel's ephemeral range (testPorts), so in that window no outgoing
// connection of another test can take it as its local port.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct free ports. Each listener stays open until all n are chosen:
// calling FreePort n times can return the same port twice, since a closed port is free again.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	lo, hi := testPorts()
	for i := range ports {
		l, err := listenFree(lo, hi)
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// testPorts is the range test ports are chosen from: the ports below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range, from which every outgoing connection takes its local
// port and every listener on port 0 its port), down to 10000. A port chosen from the ephemeral
// range itself can be taken, between FreePort and the bind, by any connection a parallel test
// makes: that happened in CI (bind: address already in use). lo is 0 where the range cannot be
// read or leaves no room: the kernel then chooses, as before. Read once per test binary.
var testPorts = sync.OnceValues(func() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	var first, last int
	if n, _ := fmt.Sscan(string(b), &first, &last); n != 2 || first <= 11000 {
		return 0, 0
	}
	return 10000, first - 1
})

// listenFree listens on a free port of 127.0.0.1 in [lo, hi], tried at random, or on one the
// kernel chooses when lo is 0.
func listenFree(lo, hi int) (net.Listener, error) {
	if lo == 0 {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	var err error
	for range 200 {
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo+1))); err == nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no free port in %d-%d after 200 tries: %w", lo, hi, err)
}

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// WaitTCP waits until addr accepts a TCP connection or the timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %s: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Process is an external program started for a test. Its combined output is kept and printed
// when the test fails. Methods are safe for concurrent use.
type Process struct {
	t    testing.TB
	name string
	path string
	args []string
	env  []string
	dir  string
	cred *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	output *lockedBuffer
}

// ProcessOptions tunes StartProcess.
type ProcessOptions struct {
	Env  []string            // extra environment, appended to the test's own
	Dir  string              // working directory; the test's when empty
	Cred *syscall.Credential // run as another user (PostgreSQL refuses root)
}

// StartProcess starts path with args and stops it (SIGTERM, then SIGKILL after 5 s) when the
// test ends. The caller waits for readiness itself (WaitTCP, or a probe of its own).
func StartProcess(t testing.TB, name, path string, args []string, opts ProcessOptions) *Process {
	t.Helper()
	p := &Process{t: t, name: name, path: path, args: args, env: opts.Env, dir: opts.Dir, cred: opts.Cred, output: &lockedBuffer{}}
	if err := p.start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.Output())
		}
	})
	return p
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Dir = p.dir
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	// Own process group, so a stop reaches the program's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// Pid returns the process id of the running program, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the program's process group.
func (p *Process) Signal(sig syscall.Signal) error {
	pid := p.Pid()
	if pid == 0 {
		return errors.New("not running")
	}
	return syscall.Kill(-pid, sig)
}

// Exited returns a channel closed when the current run of the program has exited.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitCode returns the exit code of the last run, or -1 while it runs or when killed by a signal.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Kill stops the program at once with SIGKILL, as a crash would, and waits for it to exit.
func (p *Process) Kill() {
	p.stopWith(syscall.SIGKILL, 0)
}

// Stop asks the program to exit with SIGTERM and kills it after 5 s.
func (p *Process) Stop() {
	p.stopWith(syscall.SIGTERM, 5*time.Second)
}

func (p *Process) stopWith(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	<-done
}

// Restart starts the program again with the same arguments, after it was stopped or killed.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	if err := p.start(); err != nil {
		p.t.Fatalf("testenv: restart %s: %v", p.name, err)
	}
}

// Output returns everything the program has printed so far.
func (p *Process) Output() string { return p.output.String() }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Bound what we keep: a chatty daemon must not grow the test's heap without limit.
	if b.buf.Len() > 4<<20 {
		b.buf.Reset()
		b.buf.WriteString("[earlier output dropped]\n")
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// shortTempDir makes a directory with a short path (Unix socket paths are limited to 107 bytes,
// and t.TempDir paths can exceed that) that is removed when the test ends.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testenv: temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func trimOutput(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
