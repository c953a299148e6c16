package balancer

import (
	"sync/atomic"
	"unsafe"
)

// Weighted is smooth weighted round-robin (nginx's default upstream algorithm): over every cycle
// of sum(weights) picks, each endpoint gets exactly its weight, interleaved rather than in
// bursts. nginx keeps the running weights under a lock; here the cycle is computed once per
// endpoint set into a schedule and walked with an atomic counter, so Pick is lock-free. The zero
// value is ready; one Weighted serves one upstream.
type Weighted struct {
	next  atomic.Uint64
	sched atomic.Pointer[schedule]
}

var _ Policy = (*Weighted)(nil)

type schedule struct {
	first   *Endpoint // identity of the endpoint slice the schedule was built for
	n       int
	weights []int
	order   []uint16
}

// maxScheduleLen bounds the schedule: 1000 endpoints of weight up to 1000 would otherwise need a
// million entries. Above it weights are scaled down proportionally.
const maxScheduleLen = 1 << 14

// Pick implements Policy.
func (w *Weighted) Pick(eps []Endpoint, c Choice) int {
	if len(eps) == 0 {
		return -1
	}
	s := w.sched.Load()
	if s == nil || s.first != unsafe.SliceData(eps) || s.n != len(eps) || !sameWeights(s.weights, eps) {
		s = buildSchedule(eps)
		w.sched.Store(s)
	}
	start := int((w.next.Add(1) - 1) % uint64(len(s.order)))
	for k := 0; k < len(s.order); k++ {
		j := start + k
		if j >= len(s.order) {
			j -= len(s.order)
		}
		if i := int(s.order[j]); usable(eps, i, c) {
			return i
		}
	}
	return -1
}

func sameWeights(ws []int, eps []Endpoint) bool {
	for i, e := range eps {
		if ws[i] != e.Weight() {
			return false
		}
	}
	return true
}

// buildSchedule runs nginx's smooth weighted round-robin for one full cycle.
func buildSchedule(eps []Endpoint) *schedule {
	weights := make([]int, len(eps))
	total := 0
	for i, e := range eps {
		weights[i] = max(e.Weight(), 1)
		total += weights[i]
	}
	scaled := weights
	if total > maxScheduleLen {
		// Scale down, keeping every endpoint in the cycle at least once.
		original := total
		scaled = make([]int, len(weights))
		total = 0
		for i, wt := range weights {
			scaled[i] = max(wt*maxScheduleLen/original, 1)
			total += scaled[i]
		}
	}
	current := make([]int, len(eps))
	order := make([]uint16, 0, total)
	for range total {
		best := 0
		for i := range current {
			current[i] += scaled[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		order = append(order, uint16(best))
	}
	return &schedule{first: unsafe.SliceData(eps), n: len(eps), weights: weights, order: order}
}
