package runner

import (
	"strings"
	"testing"
)

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:1/plain
  1 threads and 64 connections
  Latency Distribution
     50%    1.20ms
Requests/sec:  20000.00
ARCHWAY_BENCH requests=100000 duration_us=5000000 connect=0 read=2 write=1 status=3 timeout=4 p50=1200 p90=2500 p99=4100 p999=9000
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps() != 20000 || r.Errors != 10 || r.P50 != 1.2 || r.P999 != 9 {
		t.Fatalf("%+v rps %v", r, r.rps())
	}
	if _, err := parseWrk("unable to connect"); err == nil {
		t.Fatal("no error without a result line")
	}
}

func TestScripts(t *testing.T) {
	s := wrkPOSTScript(4096)
	if !strings.Contains(s, `string.rep("a", 4096)`) || !strings.Contains(s, "done = function") {
		t.Fatal(s)
	}
	m := wrkMixScript([]string{"/a", "/b?c=d"})
	if !strings.Contains(m, `"/b?c=d",`) || !strings.Contains(m, "request = function") {
		t.Fatal(m)
	}
}

func TestParsePerfStat(t *testing.T) {
	out := "12345,,raw_syscalls:sys_enter,2000000000,100.00,,\n678,,context-switches,2000000000,100.00,,\n"
	c, err := parsePerfStat(out)
	if err != nil {
		t.Fatal(err)
	}
	if c["raw_syscalls:sys_enter"] != 12345 || c["context-switches"] != 678 {
		t.Fatalf("counts %v", c)
	}
	if _, err := parsePerfStat("<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n"); err == nil {
		t.Fatal("a tracepoint perf could not count was taken as a count")
	}
}

func TestParseH2load(t *testing.T) {
	out := `starting benchmark...
Application protocol: h2
finished in 5.00s, 12345.60 req/s, 13.50MB/s
requests: 61728 total, 61728 started, 61728 done, 61700 succeeded, 28 failed, 0 errored, 0 timeout
status codes: 61700 2xx, 0 3xx, 0 4xx, 28 5xx
traffic: 67.51MB (70786048) total, 1.23MB (1289470) headers (space savings 90.12%), 62.98MB (66043904) data
                     min         max         mean         sd        +/- sd
time for request:      112us     91.53ms     12.90ms      7.61ms    71.30%
`
	m, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if m["rps"] != 12345.60 || m["requests"] != 61700 || m["errors"] != 56 || m["mean_ms"] != 12.90 {
		t.Fatalf("parsed %v", m)
	}
}
