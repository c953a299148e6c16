package runner

import (
	"fmt"
	"strconv"
	"strings"
)

// wrkDone is appended to every wrk script: it prints what the benchmark needs in one line,
// including p99.9, which wrk's own --latency table does not show.
const wrkDone = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("ARCHWAY_BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%d p90=%d p99=%d p999=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
`

// wrkPOSTScript sends POST requests with a body of size bytes.
func wrkPOSTScript(size int) string {
	return fmt.Sprintf(`wrk.method = "POST"
wrk.body = string.rep("a", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
`, size) + wrkDone
}

// wrkMixScript cycles through paths (a storefront's browsing mix).
func wrkMixScript(paths []string) string {
	var b strings.Builder
	b.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "  %q,\n", p)
	}
	b.WriteString(`}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
`)
	return b.String() + wrkDone
}

// wrkResult is what one wrk run reports.
type wrkResult struct {
	Requests   int64
	DurationUS int64
	Errors     int64 // connect, read, write, timeout and status >= 400
	P50, P90   float64
	P99, P999  float64 // milliseconds
}

func (w wrkResult) rps() float64 {
	if w.DurationUS == 0 {
		return 0
	}
	return float64(w.Requests) / (float64(w.DurationUS) / 1e6)
}

func parseWrk(out string) (wrkResult, error) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ARCHWAY_BENCH ")
		if !ok {
			continue
		}
		v := map[string]int64{}
		for _, kv := range strings.Fields(rest) {
			k, val, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return wrkResult{}, fmt.Errorf("wrk output %q: %w", kv, err)
			}
			v[k] = n
		}
		ms := func(k string) float64 { return float64(v[k]) / 1000 }
		return wrkResult{
			Requests:   v["requests"],
			DurationUS: v["duration_us"],
			Errors:     v["connect"] + v["read"] + v["write"] + v["timeout"] + v["status"],
			P50:        ms("p50"), P90: ms("p90"), P99: ms("p99"), P999: ms("p999"),
		}, nil
	}
	return wrkResult{}, fmt.Errorf("no result line in wrk output:\n%s", lastLines(out, 15))
}
