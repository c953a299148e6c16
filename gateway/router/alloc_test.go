//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package router

import "testing"

func TestMatchAllocatesNothing(t *testing.T) {
	tbl := table(t)
	host, path := []byte("a.example.com"), []byte("/api/products/42/reviews/7")
	if n := testing.AllocsPerRun(1000, func() { tbl.Match(host, path, get) }); n != 0 {
		t.Fatalf("Match allocates %.1f times", n)
	}
}
