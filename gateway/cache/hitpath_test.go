package cache

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// parseRequest parses a raw request head as fasthttp's server does; nil when it refuses it.
func parseRequest(raw string) *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return nil
	}
	return &h
}

// peekedFields is what the hit path read field by field before readRequestFields: PeekBytes
// (the first line) for each precondition and bypass field, every line for Cache-Control.
func peekedFields(raw string) (requestFields, bool) {
	h := parseRequest(raw)
	if h == nil {
		return requestFields{}, false
	}
	var f requestFields
	f.authorization = h.PeekBytes([]byte("Authorization"))
	f.rng = h.PeekBytes([]byte("Range"))
	f.inm = h.PeekBytes([]byte("If-None-Match"))
	f.ims = h.PeekBytes([]byte("If-Modified-Since"))
	f.cc, _ = appendRequestField(nil, h, "Cache-Control")
	pragma, _ := appendRequestField(nil, h, "Pragma")
	f.pragmaNoCache = bytes.Contains(pragma, []byte("no-cache"))
	return f, true
}

func fieldsString(f requestFields) string {
	return fmt.Sprintf("auth=%q range=%q inm=%q ims=%q cc=%q pragma-no-cache=%v", f.authorization, f.rng, f.inm, f.ims, f.cc, f.pragmaNoCache)
}

// checkRequestFields fails unless one pass over raw's fields reads what a lookup per field read.
func checkRequestFields(t *testing.T, raw string) {
	t.Helper()
	want, ok := peekedFields(raw)
	if !ok {
		return
	}
	got := readRequestFields(parseRequest(raw), nil)
	if fieldsString(got) != fieldsString(want) {
		t.Fatalf("%q:\none pass:   %s\nper field:  %s", raw, fieldsString(got), fieldsString(want))
	}
}

var requestFieldCases = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nRange: bytes=0-1\r\nIf-None-Match: \"v1\"\r\nIf-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n",
	// Lower case names, as HTTP/2 and many clients send them.
	"GET / HTTP/1.1\r\nhost: a\r\nauthorization: Basic y\r\nrange: bytes=1-\r\nif-none-match: W/\"x\"\r\nif-modified-since: x\r\ncache-control: no-cache\r\npragma: no-cache\r\n\r\n",
	// Several lines: the first counts for each precondition, every one for Cache-Control.
	"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\"\r\nIf-None-Match: \"b\"\r\nCache-Control: max-age=5\r\nCache-Control: no-store\r\nAuthorization: \r\nAuthorization: Bearer z\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: x\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: NO-CACHE\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nCache-Control:\r\nPragma: no-cache\r\n\r\n",
	// Names of the same lengths that are not the fields read.
	"GET / HTTP/1.1\r\nHost: a\r\nX-Cache-Ctrl1: no-store\r\nX-Range: 1\r\nX-Pragm: no-cache\r\nIf-Unmodified-Sin: x\r\nIf-Match-None: \"q\"\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nCookie: sid=1\r\nUser-Agent: curl\r\nContent-Type: text/plain\r\n\r\n",
}

func TestReadRequestFieldsReadsWhatPeekRead(t *testing.T) {
	for _, raw := range requestFieldCases {
		checkRequestFields(t, raw)
	}
}

func FuzzReadRequestFields(f *testing.F) {
	for _, raw := range requestFieldCases {
		f.Add(strings.TrimPrefix(strings.TrimSuffix(raw, "\r\n\r\n"), "GET / HTTP/1.1\r\n"))
	}
	f.Fuzz(func(t *testing.T, fields string) {
		checkRequestFields(t, "GET / HTTP/1.1\r\n"+fields+"\r\n\r\n")
	})
}

// Lookups take no lock and run while entries are stored, replaced, evicted, purged and the index
// grows: each finds the entry of its own key or nothing, and (with a budget nothing is evicted
// from) a key stored and never removed is always found. Run it with -race.
func TestStoreLookupsDuringWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int64
	}{{"growing and purging", 64 << 20}, {"evicting", 256 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore(tc.budget)
			keep := &Entry{Key: "keep", Path: "/keep", Body: []byte("k")}
			s.Put(keep)
			evicting := tc.budget < 1<<20
			var stop atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for r := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						key := []byte(fmt.Sprint("k", (i*7+r)%3000))
						if e := s.Get(s.Hash(key), key); e != nil && e.Key != string(key) {
							errs <- fmt.Errorf("lookup of %s found %s", key, e.Key)
							return
						}
						if got := s.Get(s.Hash([]byte("keep")), []byte("keep")); got != keep && (got != nil || !evicting) {
							errs <- fmt.Errorf("lookup %d of an entry never removed found %v", i, got)
							return
						}
					}
				}()
			}
			body := make([]byte, 512)
			for i := range 20000 {
				s.Put(&Entry{Key: fmt.Sprint("k", i%3000), Path: "/p", Body: body}) // replaces, grows, evicts
				if i%5000 == 4999 {
					s.Purge("/p")
				}
			}
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if evicting && s.Evictions() == 0 {
				t.Fatal("nothing was evicted")
			}
			s.Purge("")
			if s.Len() != 0 || s.Bytes() != 0 || s.Get(s.Hash([]byte("keep")), []byte("keep")) != nil {
				t.Fatalf("after purging everything: %d entries, %d bytes", s.Len(), s.Bytes())
			}
		})
	}
}

// The index holds exactly the entries the store holds, through replacement, eviction, purges
// and growth.
func TestStoreIndexMatchesEntries(t *testing.T) {
	s := NewStore(300 * (entryOverhead + 40))
	for i := range 5000 {
		key := fmt.Sprint("k", i%700)
		s.Put(&Entry{Key: key, Path: "/p" + fmt.Sprint(i%3)})
		if i%1000 == 999 {
			s.Purge("/p1")
		}
	}
	s.listMu.Lock()
	defer s.listMu.Unlock()
	listed := 0
	for n := s.head; n != nil; n = n.next {
		listed++
		if got := s.index.Load().find(n.hash); got != n {
			t.Fatalf("%s is listed but the index has %v", n.e.Key, got)
		}
	}
	indexed := 0
	t2 := s.index.Load()
	for i := range t2.slots {
		for c := t2.slots[i].Load(); c != nil; c = c.next {
			indexed++
		}
	}
	if listed != indexed || int64(listed) != s.Len() {
		t.Fatalf("listed %d, indexed %d, Len %d", listed, indexed, s.Len())
	}
}
