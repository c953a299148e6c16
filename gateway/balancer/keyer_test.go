package balancer

import (
	"net/netip"
	"testing"
)

// IPHash derives its own key from the client address, the same key the forwarder used to
// compute from the address bytes, so a client stays on its target across the change.
func TestIPHashKeyIsTheClientAddressHash(t *testing.T) {
	for _, s := range []string{"192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7", ""} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		if got, want := (&IPHash{}).Key(a), HashBytes(a.AsSlice()); got != want {
			t.Errorf("%q: key %x, want %x", s, got, want)
		}
	}
	if (&IPHash{}).Key(netip.MustParseAddr("192.0.2.7")) == (&IPHash{}).Key(netip.MustParseAddr("192.0.2.8")) {
		t.Error("two clients share a key")
	}
	for _, p := range []Policy{&LeastConn{}, &RoundRobin{}, &Random{}, &Weighted{}} {
		if _, ok := p.(Keyer); ok {
			t.Errorf("%T keys on the client, but picks without a key", p)
		}
	}
}

func TestIPHashKeyAllocatesNothing(t *testing.T) {
	a := netip.MustParseAddr("2001:db8::1")
	var p Keyer = &IPHash{}
	if n := testing.AllocsPerRun(100, func() { _ = p.Key(a) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
