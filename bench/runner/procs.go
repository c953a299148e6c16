package runner

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a program the benchmark started: an upstream, a proxy, a load generator.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	out  *tailBuffer
}

// start runs path with args, pinned to cpus with taskset when cpus is not empty.
func start(name, cpus string, env []string, path string, args ...string) (*process, error) {
	if cpus != "" {
		args = append([]string{"-c", cpus, path}, args...)
		path = "taskset"
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &tailBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), out: out}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL to the process group after grace.
func (p *process) stop(grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = b.buf[len(b.buf)-b.max:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// waitHTTP waits until GET url answers 200.
func (r *Runner) waitHTTP(ctx context.Context, url string, p *process, timeout time.Duration) error {
	return waitHTTPWith(ctx, r.client(time.Second), url, p, timeout)
}

// waitHTTPWith is waitHTTP asking with client.
func waitHTTPWith(ctx context.Context, client *http.Client, url string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %s", p.name, lastLines(p.out.String(), 10))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %s: %v", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// procTree is a process and its descendants (nginx's master and workers).
func procTree(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	// f[0] is field 3 (state): field n is f[n-3].
	return procStat{ppid: int(num(1)), utime: num(11), stime: num(12), cutime: num(13), cstime: num(14)}, nil
}

// clockTick is USER_HZ, 100 on every Linux architecture Debian ships.
const clockTick = 100

// cpuTicks is the CPU time of a process tree: every live process's own time plus the time of
// children that exited and were waited for (nginx workers replaced by a reload).
func cpuTicks(root int) int64 {
	var total int64
	for _, pid := range procTree(root) {
		if st, err := readStat(pid); err == nil {
			total += st.utime + st.stime + st.cutime + st.cstime
		}
	}
	return total
}

// memKiB sums a /proc/<pid>/status field (VmRSS, VmHWM) over a process tree.
func memKiB(root int, field string) int64 {
	var total int64
	for _, pid := range procTree(root) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
				n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				total += n
			}
		}
		f.Close()
	}
	return total
}

// pssKiB sums the proportional set size over a process tree: memory shared between nginx's
// master and workers (the binary, shared-memory zones) counted once, not once per process.
func pssKiB(root int) int64 {
	var total int64
	for _, pid := range procTree(root) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				total += n
				break
			}
		}
	}
	return total
}

// resetPeak resets the peak RSS (VmHWM) of a process tree (Linux clear_refs 5).
func resetPeak(root int) {
	for _, pid := range procTree(root) {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	}
}

// cpuTimes is the machine-wide /proc/stat cpu line: total, steal and busy (neither idle,
// iowait nor steal) ticks.
func cpuTimes() (total, steal, busy int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal (guest is inside user)
			total += v
		}
		if i == 7 {
			steal = v
		}
		if i < 8 && i != 3 && i != 4 && i != 7 {
			busy += v
		}
	}
	return total, steal, busy
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// switchCounts sums the voluntary and involuntary context switches of every thread of pids
// (/proc/<pid>/task/<tid>/status). A process that exits meanwhile is left out of the later
// count, so count over processes that live through the window.
func switchCounts(pids []int) (vol, invol int64) {
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/task", pid)
		tasks, _ := os.ReadDir(dir)
		for _, t := range tasks {
			data, err := os.ReadFile(dir + "/" + t.Name() + "/status")
			if err != nil {
				continue // the thread ended
			}
			v, n := parseSwitches(data)
			vol += v
			invol += n
		}
	}
	return vol, invol
}

// parseSwitches reads voluntary_ctxt_switches and nonvoluntary_ctxt_switches from a
// /proc/.../status file.
func parseSwitches(status []byte) (vol, invol int64) {
	for _, line := range strings.Split(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "voluntary_ctxt_switches":
			vol = n
		case "nonvoluntary_ctxt_switches":
			invol = n
		}
	}
	return vol, invol
}
