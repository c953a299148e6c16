package runner

import (
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/archway-gateway/archway/bench/stats"
)

// h2Load drives the contender with h2load over TLS: HTTP/2 with streams concurrent streams
// on each of conns connections, or (h1) HTTP/1.1 over the same TLS, one request in flight per
// connection, for reference.
func h2Load(conns, streams int, h1 bool) func(*Runner, placement, *proxyProc, contender, time.Duration) (map[string]float64, error) {
	return func(r *Runner, pl placement, px *proxyProc, c contender, d time.Duration) (map[string]float64, error) {
		args := []string{"-c", strconv.Itoa(conns), "-m", strconv.Itoa(streams), "-t", strconv.Itoa(pl.wrkThreads),
			"-D", strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))), "--warm-up-time", "0", px.url(c.path)}
		if h1 {
			args = append([]string{"--h1"}, args...)
		}
		cmd := exec.Command(r.h2load, args...)
		if pl.loadCPU != "" {
			cmd = exec.Command("taskset", append([]string{"-c", pl.loadCPU, r.h2load}, args...)...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("h2load: %w\n%s", err, lastLines(string(out), 15))
		}
		m, err := parseH2load(string(out))
		if err != nil {
			return nil, err
		}
		if !h1 && !strings.Contains(string(out), "Application protocol: h2") {
			return nil, fmt.Errorf("%s did not negotiate h2:\n%s", c.label, lastLines(string(out), 15))
		}
		return m, nil
	}
}

var (
	h2Finished = regexp.MustCompile(`finished in ([0-9.]+)(m?s), ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Latency  = regexp.MustCompile(`time for request:\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)`)
)

// parseH2load reads h2load's summary: req/s, the request counts, and the mean time per
// request (h2load reports no percentiles, so it is recorded as mean_ms, not as a p50).
func parseH2load(out string) (map[string]float64, error) {
	f := h2Finished.FindStringSubmatch(out)
	q := h2Requests.FindStringSubmatch(out)
	if f == nil || q == nil {
		return nil, fmt.Errorf("no summary in h2load output:\n%s", lastLines(out, 15))
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	m := map[string]float64{stats.RPS: num(f[3]), stats.Requests: num(q[4]), stats.Errors: num(q[5])} // failed includes errored and timeout
	if s := h2Status.FindStringSubmatch(out); s != nil {
		// h2load counts a 4xx or 5xx answer as succeeded: the benchmark counts it as failed.
		m[stats.Errors] += num(s[3]) + num(s[4])
	}
	if l := h2Latency.FindStringSubmatch(out); l != nil {
		scale := map[string]float64{"us": 0.001, "ms": 1, "s": 1000}
		m["mean_ms"] = num(l[5]) * scale[l[6]]
	}
	return m, nil
}

// speaksH2 reports whether the proxy's TLS listener negotiates h2 by ALPN.
func (r *Runner) speaksH2(px *proxyProc) bool {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", px.addr, &tls.Config{RootCAs: r.tlsClient().RootCAs, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return false
	}
	defer c.Close()
	return c.ConnectionState().NegotiatedProtocol == "h2"
}
