package access

import (
	"net/netip"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
)

func cidrs(t *testing.T, ss ...string) []config.CIDR {
	t.Helper()
	out := make([]config.CIDR, len(ss))
	for i, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = config.CIDR{Prefix: p.Masked()}
	}
	return out
}

func TestAdmits(t *testing.T) {
	for _, tc := range []struct {
		name        string
		allow, deny []string
		addr        string
		want        bool
	}{
		{"office network admitted", []string{"10.20.0.0/16"}, nil, "10.20.3.4", true},
		{"outside the office refused", []string{"10.20.0.0/16"}, nil, "203.0.113.9", false},
		{"deny only: listed refused", nil, []string{"203.0.113.0/24"}, "203.0.113.9", false},
		{"deny only: others admitted", nil, []string{"203.0.113.0/24"}, "198.51.100.1", true},
		{"deny carves an exception out of allow", []string{"10.0.0.0/8"}, []string{"10.6.0.0/16"}, "10.6.1.1", false},
		{"the rest of allow still admitted", []string{"10.0.0.0/8"}, []string{"10.6.0.0/16"}, "10.7.1.1", true},
		{"IPv4-mapped IPv6 is the IPv4 address", []string{"10.0.0.0/8"}, nil, "::ffff:10.1.2.3", true},
		{"IPv6 allow", []string{"2001:db8::/32"}, nil, "2001:db8::1", true},
		{"IPv6 outside", []string{"2001:db8::/32"}, nil, "2001:db9::1", false},
		{"IPv4 list does not admit IPv6", []string{"0.0.0.0/0"}, nil, "2001:db8::1", false},
		{"single host", []string{"192.0.2.7/32"}, nil, "192.0.2.7", true},
		{"unknown address refused with an allow list", []string{"0.0.0.0/0"}, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(&config.Access{Allow: cidrs(t, tc.allow...), Deny: cidrs(t, tc.deny...)})
			var addr netip.Addr
			if tc.addr != "" {
				addr = netip.MustParseAddr(tc.addr)
			}
			if got := l.Admits(addr); got != tc.want {
				t.Fatalf("Admits(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestNoAccessSectionNoMiddleware(t *testing.T) {
	mw, err := Middleware(&config.Route{}, &config.Config{})
	if err != nil || mw != nil {
		t.Fatalf("Middleware = %v, %v; want nil, nil (a route without access costs nothing)", mw, err)
	}
}

func TestAdmitsAllocatesNothing(t *testing.T) {
	l := New(&config.Access{Allow: cidrs(t, "10.0.0.0/8", "2001:db8::/32"), Deny: cidrs(t, "10.6.0.0/16")})
	addr := netip.MustParseAddr("10.7.1.1")
	if n := testing.AllocsPerRun(1000, func() { l.Admits(addr) }); n != 0 {
		t.Fatalf("Admits allocates %.1f times", n)
	}
}
