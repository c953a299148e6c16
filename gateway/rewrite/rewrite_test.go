package rewrite

import (
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
)

func TestRewriteApply(t *testing.T) {
	for _, tc := range []struct {
		name, regex, replacement, path, want string
		matched                              bool
	}{
		{"old to new", `^/old/(.*)$`, "/new/$1", "/old/a/b", "/new/a/b", true},
		{"no match keeps the path", `^/old/(.*)$`, "/new/$1", "/other/a", "/other/a", false},
		{"named group", `^/u/(?P<id>[0-9]+)$`, "/users/$id", "/u/42", "/users/42", true},
		{"groups reordered", `^/(\w+)/(\w+)$`, "/$2/$1", "/a/b", "/b/a", true},
		{"version bump with a suffix", `^/api/v1/(.*)$`, "/api/v2/$1.json", "/api/v1/items", "/api/v2/items.json", true},
		{"unanchored replaces the whole path", `/legacy`, "/modern", "/x/legacy/y", "/modern", true},
		{"empty capture", `^/old/(.*)$`, "/new/$1", "/old/", "/new/", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw, err := NewRewrite(&config.Rewrite{Regex: tc.regex, Replacement: tc.replacement})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := rw.Apply([]byte(tc.path))
			if string(got) != tc.want || ok != tc.matched {
				t.Fatalf("Apply(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.matched)
			}
		})
	}
}

func TestRewriteNoMatchAllocatesNothing(t *testing.T) {
	rw, err := NewRewrite(&config.Rewrite{Regex: `^/old/(.*)$`, Replacement: "/new/$1"})
	if err != nil {
		t.Fatal(err)
	}
	path := []byte("/api/products/42")
	if n := testing.AllocsPerRun(1000, func() { rw.Apply(path) }); n != 0 {
		t.Fatalf("a path the regex does not match allocates %.1f times", n)
	}
}

func TestNoSectionNoMiddleware(t *testing.T) {
	rw, err1 := RewriteMiddleware(&config.Route{}, &config.Config{})
	rd, err2 := RedirectHandler(&config.Route{}, &config.Config{})
	if rw != nil || rd != nil || err1 != nil || err2 != nil {
		t.Fatal("a route without rewrite or redirect got a middleware (it must cost nothing)")
	}
}

// FuzzRewriteApply: whatever the path, a rewrite never panics, leaves a path it does not match
// as it was, and gives a matched one the replacement's shape.
func FuzzRewriteApply(f *testing.F) {
	rw, err := NewRewrite(&config.Rewrite{Regex: `^/old/([^/]*)/(.*)$`, Replacement: "/new/$2/$1"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/old/a/b", "/old//", "/other", "/old/%2F/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got, ok := rw.Apply([]byte(path))
		switch {
		case !ok && string(got) != path:
			t.Fatalf("unmatched %q came back as %q", path, got)
		case ok && (len(got) < len("/new//") || string(got[:5]) != "/new/"):
			t.Fatalf("%q rewritten to %q", path, got)
		}
	})
}
