package split

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

func canary(sticky string) *config.Split {
	return &config.Split{Sticky: sticky, Upstreams: []config.SplitUpstream{
		{Upstream: "stable", Weight: 95},
		{Upstream: "canary", Weight: 5, Match: &config.SplitMatch{Header: "X-Canary", Value: "always"}},
	}}
}

func mustNew(t testing.TB, c *config.Split) *Split {
	t.Helper()
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newExchange(headers ...string) *proxy.Exchange {
	x := &proxy.Exchange{Ctx: &fasthttp.RequestCtx{}, ClientIP: netip.MustParseAddr("192.0.2.1")}
	for i := 0; i+1 < len(headers); i += 2 {
		x.Ctx.Request.Header.Set(headers[i], headers[i+1])
	}
	return x
}

func TestSmoothSequence(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    []uint16
	}{
		{[]int{95, 5}, append(slices.Repeat([]uint16{0}, 10), append([]uint16{1}, slices.Repeat([]uint16{0}, 9)...)...)},
		{[]int{2, 1}, []uint16{0, 1, 0}},
		{[]int{1, 1, 1}, []uint16{0, 1, 2}},
		{[]int{5, 0}, []uint16{0}},
		{[]int{0, 0}, nil},
	} {
		got := smoothSequence(tc.weights)
		if !slices.Equal(got, tc.want) {
			t.Errorf("smoothSequence(%v) = %v, want %v", tc.weights, got, tc.want)
		}
	}
}

// TestWeightsHoldOverTenThousandRequests: 10 000 requests at 95/5 land within ±1 % of the
// weights. The counter makes it exact, so the bound cannot flake.
func TestWeightsHoldOverTenThousandRequests(t *testing.T) {
	for _, weights := range [][2]int{{95, 5}, {90, 10}, {50, 50}, {99, 1}, {70, 30}} {
		t.Run(fmt.Sprintf("%d/%d", weights[0], weights[1]), func(t *testing.T) {
			c := canary("")
			c.Upstreams[0].Weight, c.Upstreams[1].Weight = weights[0], weights[1]
			s := mustNew(t, c)
			x := newExchange()
			var counts [2]int
			for range 10000 {
				counts[s.Choose(x)]++
			}
			for i, w := range weights {
				share := float64(counts[i]) / 100 // percent of 10 000
				if share < float64(w)-1 || share > float64(w)+1 {
					t.Errorf("%s got %.2f %%, weight %d %%", c.Upstreams[i].Upstream, share, w)
				}
			}
		})
	}
}

func TestStickyClientIP(t *testing.T) {
	s := mustNew(t, canary(config.StickyClientIP))
	var counts [2]int
	for i := range 10000 {
		x := newExchange()
		x.ClientIP = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		first := s.Choose(x)
		for range 3 {
			if got := s.Choose(x); got != first {
				t.Fatalf("client %s moved from %d to %d", x.ClientIP, first, got)
			}
		}
		counts[first]++
	}
	// The hash is deterministic, so this is a fixed outcome, not a sample.
	if share := float64(counts[1]) / 100; share < 4 || share > 6 {
		t.Errorf("10 000 clients at 95/5: %.2f %% on the canary", share)
	}
}

func TestStickyCookie(t *testing.T) {
	s := mustNew(t, canary("cookie:session"))
	var counts [2]int
	for i := range 10000 {
		x := newExchange("Cookie", fmt.Sprintf("theme=dark; session=s%06d", i))
		first := s.Choose(x)
		if s.Choose(x) != first {
			t.Fatalf("session s%06d moved", i)
		}
		counts[first]++
	}
	if share := float64(counts[1]) / 100; share < 4 || share > 6 {
		t.Errorf("10 000 sessions at 95/5: %.2f %% on the canary", share)
	}
	// Without the cookie the counter spreads requests exactly.
	x := newExchange()
	counts = [2]int{}
	for range 100 {
		counts[s.Choose(x)]++
	}
	if counts != [2]int{95, 5} {
		t.Errorf("without the cookie: %v, want [95 5]", counts)
	}
}

func TestMatchSelectsOutright(t *testing.T) {
	c := canary(config.StickyClientIP)
	c.Upstreams[1].Weight = 0 // reachable only by its match
	c.Upstreams = append(c.Upstreams, config.SplitUpstream{Upstream: "beta", Weight: 0, Match: &config.SplitMatch{Cookie: "beta", Value: "yes"}})
	s := mustNew(t, c)
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{[]string{"X-Canary", "always"}, "canary"},
		{[]string{"x-canary", "always"}, "canary"},
		{[]string{"X-Canary", "Always"}, "stable"},
		{[]string{"Cookie", "beta=yes"}, "beta"},
		{[]string{"Cookie", "beta=no"}, "stable"},
		{nil, "stable"},
	} {
		if got := s.Upstream(s.Choose(newExchange(tc.headers...))); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.headers, got, tc.want)
		}
	}
}

func TestChooseAllocatesNothing(t *testing.T) {
	for _, sticky := range []string{"", config.StickyClientIP, "cookie:session"} {
		s := mustNew(t, canary(sticky))
		x := newExchange("Cookie", "session=abc")
		if n := testing.AllocsPerRun(1000, func() { s.Choose(x) }); n != 0 {
			t.Errorf("sticky %q: Choose allocates %.1f times", sticky, n)
		}
	}
}

func TestNoSectionNoMiddleware(t *testing.T) {
	mw, err := NewRegistry().Middleware(&config.Route{}, &config.Config{})
	if mw != nil || err != nil {
		t.Fatal("a route without split got a middleware (it must cost nothing)")
	}
}

func TestRegistryCountsAcrossReloads(t *testing.T) {
	r := NewRegistry()
	route := &config.Route{Name: "products", Split: canary("")}
	cfg := &config.Config{Routes: []*config.Route{route}}
	for range 2 { // two snapshots of the same route share the counters
		mw, err := r.Middleware(route, cfg)
		if err != nil {
			t.Fatal(err)
		}
		h := mw(proxy.HandlerFunc(func(*proxy.Exchange) {})).(*handler)
		x := newExchange()
		x.Snapshot = &proxy.Snapshot{}
		for range 20 {
			h.Serve(x)
		}
	}
	if s, c := r.Served("products", "stable"), r.Served("products", "canary"); s != 38 || c != 2 {
		t.Fatalf("served stable %d canary %d, want 38 and 2", s, c)
	}
	r.Commit(&config.Config{})
	if r.Served("products", "stable") != 0 {
		t.Fatal("Commit kept the counters of a removed route")
	}
}
