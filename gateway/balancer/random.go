package balancer

// Random picks an available endpoint uniformly at random, ignoring weights. Stateless.
type Random struct{}

var _ Policy = (*Random)(nil)

// Pick implements Policy.
func (*Random) Pick(eps []Endpoint, c Choice) int {
	if len(eps) == 0 {
		return -1
	}
	return probe(eps, randN(len(eps)), c)
}
