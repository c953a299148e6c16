package protocol

import (
	"bytes"
	"slices"
	"testing"
)

func listItems(v string) []string {
	items := []string{}
	b := []byte(v)
	for len(b) > 0 {
		var item []byte
		item, b = NextListItem(b)
		items = append(items, string(item))
	}
	return items
}

func TestNextListItem(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"gzip", []string{"gzip"}},
		{"gzip, br", []string{"gzip", "br"}},
		{" \tgzip\t ,br ", []string{"gzip", "br"}},
		{"a,,b", []string{"a", "", "b"}},
		{"a,", []string{"a"}},
		{",a", []string{"", "a"}},
		{" , ", []string{"", ""}},
		{"max-age=60, no-cache", []string{"max-age=60", "no-cache"}},
		{`W/"x", "y"`, []string{`W/"x"`, `"y"`}},
	} {
		if got := listItems(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNextListItemAllocatesNothing(t *testing.T) {
	v := []byte("gzip;q=1.0, br, *;q=0")
	if n := testing.AllocsPerRun(100, func() {
		for b := v; len(b) > 0; {
			_, b = NextListItem(b)
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// Items never hold a comma or surrounding whitespace, the walk always ends, and the items with
// their commas account for every byte of the value.
func FuzzNextListItem(f *testing.F) {
	for _, s := range []string{"", "a", "a, b", " ,\t,", "x=\"a,b\", y"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		commas := 0
		for b := v; len(b) > 0; {
			before := b
			var item []byte
			item, b = NextListItem(b)
			if len(b) >= len(before) {
				t.Fatalf("no progress on %q", v)
			}
			if bytes.IndexByte(item, ',') >= 0 || len(bytes.Trim(item, " \t")) != len(item) {
				t.Fatalf("item %q of %q", item, v)
			}
			if bytes.IndexByte(before, ',') >= 0 { // this call consumed the first comma left
				commas++
			}
		}
		if want := bytes.Count(v, []byte(",")); commas != want {
			t.Fatalf("%q: %d items after commas, %d commas", v, commas, want)
		}
	})
}
