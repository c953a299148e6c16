//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package balancer

import "testing"

func TestPickAllocatesNothing(t *testing.T) {
	eps, _ := endpoints(1, 2, 3, 4)
	for _, name := range Names {
		p, _ := New(name)
		p.Pick(eps, Choice{}) // builds the weighted schedule once
		allocs := testing.AllocsPerRun(1000, func() { p.Pick(eps, Choice{Key: 42}) })
		if allocs != 0 {
			t.Errorf("%s: Pick allocates %.1f times", name, allocs)
		}
	}
}
