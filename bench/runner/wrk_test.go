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
