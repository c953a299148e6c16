package runner

import (
	"os"
	"testing"
	"time"
)

func TestParseSwitches(t *testing.T) {
	status := []byte("Name:\tgateway\nState:\tS (sleeping)\nThreads:\t7\n" +
		"voluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n")
	if v, n := parseSwitches(status); v != 1234 || n != 56 {
		t.Fatalf("parseSwitches = %d, %d; want 1234, 56", v, n)
	}
	if v, n := parseSwitches([]byte("Name:\tx\n")); v != 0 || n != 0 {
		t.Fatalf("no counts: got %d, %d", v, n)
	}
}

// TestSwitchCountsSeesThisProcessBlock: sleeping is a voluntary switch of the sleeping thread,
// so the sum over this process's threads grows across a few sleeps.
func TestSwitchCountsSeesThisProcessBlock(t *testing.T) {
	pid := os.Getpid()
	v0, _ := switchCounts([]int{pid})
	for range 5 {
		time.Sleep(time.Millisecond)
	}
	v1, _ := switchCounts([]int{pid})
	if v1 <= v0 {
		t.Fatalf("voluntary switches did not grow across sleeps: %d then %d", v0, v1)
	}
}

// TestStartAloneMeasuresOneProcess: the memory scenarios' proxy starts afresh with every other
// contender stopped, so no sibling of the same binary shares its pages; and PSS is the measure
// that needs it: a second process of the same binary takes a share of the first one's file pages.
func TestStartAloneMeasuresOneProcess(t *testing.T) {
	sleeper := func(kind string) *proxyProc {
		p, err := start(kind, "", nil, "sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.stop(time.Second) })
		return &proxyProc{kind: kind, proc: p}
	}
	// settled is a process's PSS once two readings 50 ms apart agree (its loader has finished).
	settled := func(pid int) int64 {
		prev := int64(-1)
		for range 100 {
			time.Sleep(50 * time.Millisecond)
			n := pssKiB(pid)
			if n == prev && n > 0 {
				return n
			}
			prev = n
		}
		t.Fatalf("PSS of %d did not settle", pid)
		return 0
	}
	first := sleeper("archway")
	alone := settled(first.proc.pid())
	sibling := sleeper("archway-park")
	settled(sibling.proc.pid())
	if shared := pssKiB(first.proc.pid()); shared >= alone {
		t.Errorf("PSS with a sibling of the same binary %d KiB, alone %d KiB: want less with the sibling", shared, alone)
	}

	proxies := map[string]*proxyProc{"archway": first, "archway-park": sibling}
	var fresh *proxyProc
	got, err := startAlone(proxies, "archway", func() (*proxyProc, error) {
		for kind, px := range proxies {
			if !px.proc.exited() {
				t.Errorf("%s still running when the measured proxy starts", kind)
			}
		}
		fresh = sleeper("archway")
		return fresh, nil
	})
	if err != nil || got != fresh || proxies["archway"] != fresh {
		t.Fatalf("startAlone = %v, %v; proxies[archway] = %v; want the fresh proxy", got, err, proxies["archway"])
	}
	if fresh.proc.exited() {
		t.Error("the measured proxy is not running")
	}
}
