package balancer

// LeastConn picks the available endpoint with the fewest in-flight requests relative to its
// weight, choosing uniformly at random among ties (nginx's least_conn, Envoy's LEAST_REQUEST
// with full scan). Stateless; the zero value is ready.
type LeastConn struct{}

var _ Policy = (*LeastConn)(nil)

// Pick implements Policy.
func (*LeastConn) Pick(eps []Endpoint, c Choice) int {
	best, ties := -1, 0
	var bestLoad, bestWeight int64
	for i := range eps {
		if !usable(eps, i, c) {
			continue
		}
		load, weight := eps[i].InFlight(), int64(eps[i].Weight())
		if best < 0 {
			best, bestLoad, bestWeight, ties = i, load, weight, 1
			continue
		}
		// load/weight < bestLoad/bestWeight without division.
		lhs, rhs := load*bestWeight, bestLoad*weight
		switch {
		case lhs < rhs:
			best, bestLoad, bestWeight, ties = i, load, weight, 1
		case lhs == rhs:
			// Reservoir sampling keeps each tied endpoint with equal probability.
			ties++
			if randN(ties) == 0 {
				best, bestLoad, bestWeight = i, load, weight
			}
		}
	}
	return best
}
