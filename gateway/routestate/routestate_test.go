package routestate

import (
	"fmt"
	"testing"
)

type counter struct {
	name    string
	limit   int
	created int
}

func TestKeepsStateOfKeptRoutesAndForgetsTheRest(t *testing.T) {
	r := New[*counter]()
	made := 0
	use := func(name string, limit int) *counter {
		return r.Use(name, func() *counter { made++; return &counter{name: name, limit: limit, created: made} },
			func(c *counter) { c.limit = limit })
	}
	a1, b1 := use("a", 1), use("b", 1)
	r.Commit([]string{"a", "b"})
	if got := r.Live(); len(got) != 2 || got[0] != a1 || got[1] != b1 {
		t.Fatalf("live %v", got)
	}
	a2 := use("a", 5) // a reload that keeps a with new settings, drops b
	r.Commit([]string{"a"})
	if a2 != a1 || a2.limit != 5 || made != 2 {
		t.Fatalf("a was not kept and updated: %+v (made %d)", a2, made)
	}
	if _, ok := r.Lookup("b"); ok || len(r.Live()) != 1 {
		t.Fatal("b was not forgotten")
	}
	if b2 := use("b", 1); b2 == b1 {
		t.Fatal("a route that came back reused forgotten state")
	}
}

func ExampleRegistry() {
	r := New[*counter]()
	c := r.Use("products", func() *counter { return &counter{name: "products"} }, nil)
	r.Commit([]string{"products"})
	fmt.Println(c.name, len(r.Live()))
	// Output: products 1
}
