package balancer

import (
	"math"
	"net/netip"
)

// IPHash sends every request with the same key (the client IP) to the same endpoint while that
// endpoint is available, using weighted rendezvous hashing: when an endpoint leaves, only its own
// keys move, and each endpoint receives keys in proportion to its weight. Stateless.
type IPHash struct{}

var (
	_ Policy = (*IPHash)(nil)
	_ Keyer  = (*IPHash)(nil)
)

// Key implements Keyer: the client address, 4 bytes for IPv4 and 16 for IPv6.
func (*IPHash) Key(client netip.Addr) uint64 {
	switch {
	case !client.IsValid():
		return HashBytes(nil)
	case client.Is4():
		a := client.As4()
		return HashBytes(a[:])
	}
	a := client.As16()
	return HashBytes(a[:])
}

// Pick implements Policy.
func (*IPHash) Pick(eps []Endpoint, c Choice) int {
	best := -1
	bestScore := math.Inf(-1)
	for i := range eps {
		if !usable(eps, i, c) {
			continue
		}
		h := mix(c.Key ^ eps[i].ID())
		// u in (0, 1); -w/ln(u) is the weighted rendezvous score.
		u := (float64(h>>11) + 0.5) / (1 << 53)
		score := -float64(eps[i].Weight()) / math.Log(u)
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// mix is the splitmix64 finaliser: a cheap, well-distributed 64-bit hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// HashBytes hashes a key (a client IP's bytes) for Choice.Key. FNV-1a, then mixed.
func HashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix(h)
}
