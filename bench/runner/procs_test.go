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
