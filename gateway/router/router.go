// Package router matches requests to routes: exact paths first, then the longest path prefix on
// a segment boundary ("/api/products" matches "/api/products" and "/api/products/42", never
// "/api/productsX"), then host, then method. Matching is a handful of map lookups, one per path
// segment, and allocates nothing. A Table is immutable once built and safe for concurrent use.
package router

import (
	"fmt"
	"sort"
	"strings"
)

// Route is one entry to add to a Table.
type Route[T any] struct {
	Path   string // exact path; or
	Prefix string // path prefix, matched on segment boundaries
	// Host is "" (any host), an exact host ("shop.example.com", optionally with a port) or a
	// wildcard ("*.example.com", any subdomain). Lower case.
	Host string
	// Methods is a bit mask of method indexes (bit i for method i, as the caller numbers
	// methods); 0 means every method.
	Methods uint32
	Value   T
}

type entry[T any] struct {
	host     string // exact host, or the suffix ".example.com" of a wildcard
	wildcard bool
	hasPort  bool
	methods  uint32
	value    T
}

// Table is a built set of routes.
type Table[T any] struct {
	exact  map[string][]entry[T]
	prefix map[string][]entry[T]
}

// Outcome of a match.
type Outcome uint8

const (
	NotFound         Outcome = iota // no route for this path and host: 404
	Found                           // a route matched
	MethodNotAllowed                // routes match path and host, none the method: 405
)

// New builds a table. Routes with equal path, host and overlapping methods are a configuration
// error the caller rejects before building; here the first added wins.
func New[T any](routes []Route[T]) (*Table[T], error) {
	t := &Table[T]{exact: map[string][]entry[T]{}, prefix: map[string][]entry[T]{}}
	for _, r := range routes {
		e := entry[T]{methods: r.Methods, value: r.Value, host: r.Host}
		if strings.HasPrefix(r.Host, "*.") {
			e.wildcard, e.host = true, r.Host[1:]
		}
		e.hasPort = strings.Contains(strings.TrimPrefix(e.host, "["), ":") && !strings.HasSuffix(e.host, "]")
		switch {
		case r.Path != "" && r.Prefix == "":
			t.exact[r.Path] = append(t.exact[r.Path], e)
		case r.Prefix != "" && r.Path == "":
			p := r.Prefix
			if len(p) > 1 {
				p = strings.TrimSuffix(p, "/")
			}
			t.prefix[p] = append(t.prefix[p], e)
		default:
			return nil, fmt.Errorf("route needs exactly one of path and prefix")
		}
	}
	for _, m := range []map[string][]entry[T]{t.exact, t.prefix} {
		for _, es := range m {
			sort.SliceStable(es, func(i, j int) bool { return specificity(es[i]) > specificity(es[j]) })
		}
	}
	return t, nil
}

// specificity orders entries: exact hosts, then wildcards (longer suffix first), then any host.
func specificity[T any](e entry[T]) int {
	switch {
	case e.host == "":
		return 0
	case e.wildcard:
		return 1 + len(e.host)
	}
	return 1 << 20
}

// Match finds the route for a request. path is the normalised path; host is the Host header
// (any case, possibly with a port); method is the caller's method index (or -1 for none). On
// MethodNotAllowed, allow is the mask of methods the matching routes accept.
func (t *Table[T]) Match(host, path []byte, method int) (value T, outcome Outcome, allow uint32) {
	if es, ok := t.exact[string(path)]; ok {
		if v, o, a := pick(es, host, method); o != NotFound {
			return v, o, a
		}
	}
	p := path
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	for {
		if es, ok := t.prefix[string(p)]; ok {
			if v, o, a := pick(es, host, method); o != NotFound {
				return v, o, a
			}
		}
		if len(p) <= 1 {
			break
		}
		cut := len(p) - 1
		for cut > 0 && p[cut] != '/' {
			cut--
		}
		if cut == 0 {
			p = p[:1] // "/"
		} else {
			p = p[:cut]
		}
	}
	var zero T
	return zero, NotFound, 0
}

// pick chooses among the routes of one path: the most specific host that matches and accepts the
// method. When hosts match but no method does, it reports MethodNotAllowed.
func pick[T any](es []entry[T], host []byte, method int) (T, Outcome, uint32) {
	var allow uint32
	hostMatched := false
	for i := range es {
		e := &es[i]
		if !hostMatches(e, host) {
			continue
		}
		hostMatched = true
		if e.methods == 0 || (method >= 0 && e.methods&(1<<uint(method)) != 0) {
			return e.value, Found, 0
		}
		allow |= e.methods
	}
	var zero T
	if hostMatched {
		return zero, MethodNotAllowed, allow
	}
	return zero, NotFound, 0
}

func hostMatches[T any](e *entry[T], host []byte) bool {
	if e.host == "" {
		return true
	}
	if !e.hasPort {
		host = stripPort(host)
	}
	if e.wildcard {
		// ".example.com" matches "a.example.com" but not "example.com".
		return len(host) > len(e.host) && equalFoldSuffix(host, e.host)
	}
	return len(host) == len(e.host) && equalFoldSuffix(host, e.host)
}

func stripPort(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' { // [v6]:port
		for i := len(h) - 1; i > 0; i-- {
			if h[i] == ']' {
				return h[:i+1]
			}
		}
		return h
	}
	for i := len(h) - 1; i >= 0; i-- {
		if h[i] == ':' {
			return h[:i]
		}
	}
	return h
}

// equalFoldSuffix reports whether b ends with the lower-case string s, ignoring ASCII case.
func equalFoldSuffix(b []byte, s string) bool {
	off := len(b) - len(s)
	for i := 0; i < len(s); i++ {
		c := b[off+i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
