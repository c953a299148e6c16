package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// Why a goroutine became runnable.
const (
	causeNetpoll   = "netpoll or scheduler" // readied with no goroutine running: the netpoller, a timer
	causeGoroutine = "readied by a goroutine"
	causeCreated   = "created"
	causeSyscall   = "back from a system call without its P"
)

// Wait is one goroutine's time from runnable to running.
type Wait struct {
	D     time.Duration
	Cause string
	At    time.Duration // from the start of the trace
	// FreePs is the fewest Ps that ran no goroutine at any moment of the wait: above 0, a P
	// was idle, or held by a thread looking for work or off the CPU, while this one waited.
	FreePs int
}

// Report is what Analyze found in a trace.
type Report struct {
	Span     time.Duration
	GCCycles int
	Waits    []Wait
	// Batches counts the netpoller's hand-outs by size: consecutive goroutines one thread
	// readied with no goroutine running.
	Batches map[int]int
	// Readiers counts goroutines readied by another goroutine (they take the runnext slot),
	// by the readier's first two frames outside the runtime and standard library.
	Readiers map[string]int
	// Parks counts goroutines blocking, by their first two frames outside the runtime and the
	// standard library and the reason.
	Parks map[string]int
}

// stdPrefixes are the packages skipped when naming where something happened.
var stdPrefixes = []string{"runtime.", "internal/", "sync.", "syscall.", "os.", "net.", "time.", "io.", "bufio."}

func frames(s trace.Stack) string {
	var out []string
	for f := range s.Frames() {
		if slices.ContainsFunc(stdPrefixes, func(p string) bool { return strings.HasPrefix(f.Func, p) }) {
			continue
		}
		out = append(out, f.Func)
		if len(out) == 2 {
			break
		}
	}
	return strings.Join(out, " < ")
}

// Analyze reads a trace (the format of go tool trace, Go 1.22 and later).
func Analyze(in io.Reader) (*Report, error) {
	r, err := trace.NewReader(in)
	if err != nil {
		return nil, err
	}
	rep := &Report{Batches: map[int]int{}, Readiers: map[string]int{}, Parks: map[string]int{}}
	type pending struct {
		t     trace.Time
		cause string
	}
	pend := map[trace.GoID]pending{}
	minFree := map[trace.GoID]int{}
	procs := map[trace.ProcID]bool{} // exists → running a goroutine
	free := func() int {
		n := 0
		for _, busy := range procs {
			if !busy {
				n++
			}
		}
		return n
	}
	update := func() {
		n := free()
		for g, m := range minFree {
			minFree[g] = min(m, n)
		}
	}
	batch := map[trace.ThreadID]int{}
	var first, last trace.Time
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		netpollReady := false
		switch ev.Kind() {
		case trace.EventRangeBegin:
			if ev.Range().Name == "GC concurrent mark phase" {
				rep.GCCycles++
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			switch st.Resource.Kind {
			case trace.ResourceProc:
				p := st.Resource.Proc()
				if _, to := st.Proc(); to == trace.ProcNotExist {
					delete(procs, p)
				} else if _, ok := procs[p]; !ok {
					procs[p] = false
				}
				update()
			case trace.ResourceGoroutine:
				g := st.Resource.Goroutine()
				from, to := st.Goroutine()
				if p := ev.Proc(); p != trace.NoProc {
					if to == trace.GoRunning {
						procs[p] = true
						update()
					} else if from == trace.GoRunning {
						procs[p] = false
						update()
					}
				}
				if from == trace.GoRunning && to == trace.GoWaiting {
					rep.Parks[frames(ev.Stack())+" ["+st.Reason+"]"]++
				}
				if to == trace.GoRunnable {
					var cause string
					switch from {
					case trace.GoWaiting:
						if ev.Goroutine() == trace.NoGoroutine {
							cause, netpollReady = causeNetpoll, true
						} else {
							cause = causeGoroutine
							rep.Readiers[frames(ev.Stack())]++
						}
					case trace.GoRunning:
						cause = "stopped running: " + st.Reason
					case trace.GoNotExist:
						cause = causeCreated
					case trace.GoSyscall:
						cause = causeSyscall
					default:
						cause = "from " + from.String()
					}
					pend[g] = pending{ev.Time(), cause}
					minFree[g] = free()
				}
				if from == trace.GoRunnable && to == trace.GoRunning {
					if p, ok := pend[g]; ok {
						rep.Waits = append(rep.Waits, Wait{D: ev.Time().Sub(p.t), Cause: p.cause, At: p.t.Sub(first), FreePs: minFree[g]})
					}
					delete(pend, g)
					delete(minFree, g)
				}
			}
		}
		if th := ev.Thread(); netpollReady {
			batch[th]++
		} else if n := batch[th]; n > 0 {
			rep.Batches[n]++
			batch[th] = 0
		}
	}
	for _, n := range batch {
		if n > 0 {
			rep.Batches[n]++
		}
	}
	rep.Span = last.Sub(first)
	return rep, nil
}

// Write prints the report; requests, when above 0, turns counts into counts per request.
func (rep *Report) Write(w io.Writer, requests float64) {
	per := func(n int) string {
		if requests > 0 {
			return fmt.Sprintf("%.3f/req", float64(n)/requests)
		}
		return ""
	}
	fmt.Fprintf(w, "trace: %v, %d waits from runnable to running, %d GC cycles\n", rep.Span.Round(time.Millisecond), len(rep.Waits), rep.GCCycles)
	byCause := map[string][]time.Duration{}
	for _, x := range rep.Waits {
		byCause[x.Cause] = append(byCause[x.Cause], x.D)
		byCause["(all)"] = append(byCause["(all)"], x.D)
	}
	causes := make([]string, 0, len(byCause))
	for c := range byCause {
		causes = append(causes, c)
	}
	sort.Strings(causes)
	fmt.Fprintf(w, "\nwait from runnable to running, by what made the goroutine runnable:\n%-40s %8s %10s %10s %10s %10s %10s %7s\n", "cause", "count", "per req", "p50", "p99", "p99.9", "max", ">1ms")
	for _, c := range causes {
		ds := byCause[c]
		slices.Sort(ds)
		q := func(p float64) time.Duration {
			return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(100 * time.Nanosecond)
		}
		over := len(ds) - sort.Search(len(ds), func(i int) bool { return ds[i] > time.Millisecond })
		fmt.Fprintf(w, "%-40s %8d %10s %10v %10v %10v %10v %7d\n", c, len(ds), per(len(ds)), q(0.5), q(0.99), q(0.999), ds[len(ds)-1].Round(time.Microsecond), over)
	}
	sizes, goroutines, batches := []int{}, 0, 0
	for s, n := range rep.Batches {
		sizes = append(sizes, s)
		goroutines += s * n
		batches += n
	}
	sort.Ints(sizes)
	fmt.Fprintf(w, "\nnetpoller hand-outs: %d batches, %d goroutines, %.2f per batch; sizes (size:count):", batches, goroutines, float64(goroutines)/float64(max(batches, 1)))
	for _, s := range sizes {
		fmt.Fprintf(w, " %d:%d", s, rep.Batches[s])
	}
	fmt.Fprintln(w)
	top := func(title string, m map[string]int) {
		type kv struct {
			k string
			v int
		}
		var all []kv
		for k, v := range m {
			all = append(all, kv{k, v})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
		fmt.Fprintf(w, "\n%s:\n", title)
		for i, x := range all {
			if i == 12 {
				break
			}
			fmt.Fprintf(w, "  %8d %10s  %s\n", x.v, per(x.v), x.k)
		}
	}
	top("goroutines readied by another goroutine (the runnext slot), by the readier's frames", rep.Readiers)
	top("where goroutines block, by their frames [reason]", rep.Parks)
	n, long := 0, 0
	for _, x := range rep.Waits {
		if x.FreePs > 0 && x.D > 20*time.Microsecond {
			n++
			if x.D > time.Millisecond {
				long++
			}
		}
	}
	fmt.Fprintf(w, "\nwaits over 20us while another P ran no goroutine throughout: %d (%s), over 1ms: %d\n", n, per(n), long)
}
