// Command traceanalyze reads a Go execution trace of the gateway under load and says where
// goroutines waited to run: the wait from runnable to running by what made each goroutine
// runnable (the netpoller, another goroutine, a preemption, a system call), the netpoller's
// batch sizes, which goroutines readied others (the runnext slot) and where goroutines block,
// GC cycles, and waits during which another P ran nothing. docs/benchmarks.md, "Where the
// tail comes from", has what it found.
//
//	curl -o trace.out 'http://127.0.0.1:6060/debug/pprof/trace?seconds=3'   # gateway-pprof under load
//	go run . -requests 60000 trace.out                                       # in bench/traceanalyze
//
// It is a module of its own (golang.org/x/exp/trace), outside the gateway's.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	requests := flag.Float64("requests", 0, "requests served while the trace ran, for figures per request")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: traceanalyze [-requests N] trace.out")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "traceanalyze:", err)
		os.Exit(1)
	}
	defer f.Close()
	rep, err := Analyze(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "traceanalyze:", err)
		os.Exit(1)
	}
	rep.Write(os.Stdout, *requests)
}
