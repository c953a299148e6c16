package balancer

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

type fakeEndpoint struct {
	inflight atomic.Int64
	weight   int
	down     atomic.Bool
	id       uint64
}

func (e *fakeEndpoint) InFlight() int64      { return e.inflight.Load() }
func (e *fakeEndpoint) Weight() int          { return e.weight }
func (e *fakeEndpoint) Available(int64) bool { return !e.down.Load() }
func (e *fakeEndpoint) ID() uint64           { return e.id }

func endpoints(weights ...int) ([]Endpoint, []*fakeEndpoint) {
	eps := make([]Endpoint, len(weights))
	fakes := make([]*fakeEndpoint, len(weights))
	for i, w := range weights {
		fakes[i] = &fakeEndpoint{weight: w, id: HashBytes([]byte(fmt.Sprintf("10.0.0.%d:80", i)))}
		eps[i] = fakes[i]
	}
	return eps, fakes
}

func counts(p Policy, eps []Endpoint, n int, key func(int) uint64) []int {
	got := make([]int, len(eps))
	for i := 0; i < n; i++ {
		k := uint64(0)
		if key != nil {
			k = key(i)
		}
		if idx := p.Pick(eps, Choice{Key: k}); idx >= 0 {
			got[idx]++
		}
	}
	return got
}

func TestLeastConnPicksFewestInFlight(t *testing.T) {
	eps, fakes := endpoints(1, 1, 1)
	fakes[0].inflight.Store(5)
	fakes[1].inflight.Store(1)
	fakes[2].inflight.Store(3)
	p := &LeastConn{}
	for range 100 {
		if got := p.Pick(eps, Choice{}); got != 1 {
			t.Fatalf("picked %d, want 1 (fewest in flight)", got)
		}
	}
	fakes[1].down.Store(true)
	if got := p.Pick(eps, Choice{}); got != 2 {
		t.Fatalf("with 1 down picked %d, want 2", got)
	}
	if got := p.Pick(eps, Choice{Tried: 1 << 2}); got != 0 {
		t.Fatalf("with 1 down and 2 tried picked %d, want 0", got)
	}
}

func TestLeastConnWeightsAndTies(t *testing.T) {
	eps, fakes := endpoints(1, 3)
	fakes[0].inflight.Store(2) // 2 per unit of weight
	fakes[1].inflight.Store(3) // 1 per unit of weight
	if got := (&LeastConn{}).Pick(eps, Choice{}); got != 1 {
		t.Fatalf("picked %d, want the heavier endpoint with lower relative load", got)
	}
	// Ties are broken uniformly at random: four idle endpoints each get about a quarter.
	eps, _ = endpoints(1, 1, 1, 1)
	got := counts(&LeastConn{}, eps, 40000, nil)
	for i, c := range got {
		if c < 9000 || c > 11000 {
			t.Errorf("endpoint %d got %d of 40000 tied picks, want about 10000: %v", i, c, got)
		}
	}
}

func TestRoundRobinCyclesAndSkipsUnavailable(t *testing.T) {
	eps, fakes := endpoints(1, 1, 1)
	p := &RoundRobin{}
	if got := counts(p, eps, 300, nil); got[0] != 100 || got[1] != 100 || got[2] != 100 {
		t.Fatalf("round robin counts %v, want 100 each", got)
	}
	fakes[1].down.Store(true)
	if got := counts(p, eps, 300, nil); got[1] != 0 || got[0]+got[2] != 300 {
		t.Fatalf("with 1 down counts %v", got)
	}
}

func TestWeightedExactCycleAndSmoothness(t *testing.T) {
	eps, _ := endpoints(5, 1, 1)
	p := &Weighted{}
	var seq []int
	for range 7 {
		seq = append(seq, p.Pick(eps, Choice{}))
	}
	// nginx's smooth weighted round robin on {5,1,1}: a a b a c a a (rotated by where we start).
	got := counts(p, eps, 7000, nil)
	if got[0] != 5000 || got[1] != 1000 || got[2] != 1000 {
		t.Fatalf("weighted counts %v, want 5000/1000/1000", got)
	}
	runs := 0
	for i := 1; i < len(seq); i++ {
		if seq[i] == 0 && seq[i-1] == 0 {
			runs++
		}
	}
	if runs > 2 {
		t.Fatalf("sequence %v is bursty, want a interleaved with b and c", seq)
	}
}

func TestWeightedRebuildsWhenSetChanges(t *testing.T) {
	p := &Weighted{}
	eps, _ := endpoints(1, 1)
	counts(p, eps, 10, nil)
	eps2, _ := endpoints(1, 1, 2)
	if got := counts(p, eps2, 4000, nil); got[2] != 2000 {
		t.Fatalf("after the set changed counts %v, want the weight-2 endpoint at 2000", got)
	}
}

func TestRandomSpreads(t *testing.T) {
	eps, _ := endpoints(1, 1)
	got := counts(&Random{}, eps, 20000, nil)
	if got[0] < 9000 || got[1] < 9000 {
		t.Fatalf("random counts %v", got)
	}
}

func TestIPHashStickyWeightedAndMinimalDisruption(t *testing.T) {
	eps, fakes := endpoints(1, 1, 2)
	p := &IPHash{}
	before := make([]int, 10000)
	for k := range before {
		before[k] = p.Pick(eps, Choice{Key: HashBytes([]byte(fmt.Sprint(k)))})
		if again := p.Pick(eps, Choice{Key: HashBytes([]byte(fmt.Sprint(k)))}); again != before[k] {
			t.Fatalf("key %d moved from %d to %d with nothing changed", k, before[k], again)
		}
	}
	dist := make([]int, 3)
	for _, b := range before {
		dist[b]++
	}
	if math.Abs(float64(dist[2])-5000) > 400 {
		t.Errorf("weight-2 endpoint got %d of 10000 keys, want about 5000: %v", dist[2], dist)
	}
	fakes[0].down.Store(true)
	for k, b := range before {
		now := p.Pick(eps, Choice{Key: HashBytes([]byte(fmt.Sprint(k)))})
		if b != 0 && now != b {
			t.Fatalf("key %d moved from %d to %d although only endpoint 0 left", k, b, now)
		}
	}
}

func TestNoEndpointAvailable(t *testing.T) {
	for _, name := range Names {
		p, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		eps, fakes := endpoints(1, 2)
		fakes[0].down.Store(true)
		fakes[1].down.Store(true)
		if got := p.Pick(eps, Choice{}); got != -1 {
			t.Errorf("%s picked %d with everything down", name, got)
		}
		if got := p.Pick(nil, Choice{}); got != -1 {
			t.Errorf("%s picked %d from nothing", name, got)
		}
		eps, _ = endpoints(1, 1)
		if got := p.Pick(eps, Choice{Tried: 0b11}); got != -1 {
			t.Errorf("%s picked %d with everything tried", name, got)
		}
	}
	if _, err := New("fastest"); err == nil {
		t.Error("New accepted an unknown policy")
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{2, 8, 64} {
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 1 + i%3
		}
		eps, _ := endpoints(weights...)
		for _, name := range Names {
			p, _ := New(name)
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					var k uint64
					for pb.Next() {
						k++
						p.Pick(eps, Choice{Key: k})
					}
				})
			})
		}
	}
}

func ExampleLeastConn() {
	eps, fakes := endpoints(1, 1)
	fakes[0].inflight.Store(3)
	fmt.Println((&LeastConn{}).Pick(eps, Choice{}))
	// Output: 1
}
