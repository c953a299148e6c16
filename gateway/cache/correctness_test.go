package cache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// step is one request of a scenario and what it must get.
type step struct {
	method, target string
	headers        []string
	prep           func(x *proxy.Exchange)
	wantXCache     string
	wantBody       string // "" to skip
}

func runSteps(t *testing.T, h *harness, steps []step) {
	t.Helper()
	for i, s := range steps {
		r := h.doX(s.method, s.target, s.prep, s.headers...)
		if xcache(r) != s.wantXCache || (s.wantBody != "" && string(r.Body()) != s.wantBody) {
			t.Fatalf("step %d %s %s %v: X-Cache %q body %q, want %q %q", i, s.method, s.target, s.headers, xcache(r), r.Body(), s.wantXCache, s.wantBody)
		}
	}
}

// echo answers with a counter and what the request said, so a reused entry shows.
func echo(hdr ...string) func(ctx *fasthttp.RequestCtx) {
	var n atomic.Int64
	return func(ctx *fasthttp.RequestCtx) {
		for i := 0; i+1 < len(hdr); i += 2 {
			ctx.Response.Header.Add(hdr[i], hdr[i+1])
		}
		ctx.Response.SetBodyString(fmt.Sprintf("%d %s %s %s", n.Add(1), ctx.Request.URI().QueryString(),
			ctx.Request.Header.Peek("X-Forwarded-Host"), ctx.Request.Body()))
	}
}

func trusted(bits uint32) func(x *proxy.Exchange) {
	return func(x *proxy.Exchange) { x.PeerTrusted, x.Facts.Present = true, bits }
}

func TestCacheKeyAndBypass(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
		calls int64
	}{
		{"a GET with a body bypasses and stores nothing", []step{
			{"GET", "/c", []string{"Content-Length", "4"}, func(x *proxy.Exchange) { x.Ctx.Request.SetBodyString("evil") }, "BYPASS", "1   evil"},
			{"GET", "/c", nil, nil, "MISS", "2   "},
			{"GET", "/c", nil, nil, "HIT", "2   "},
			{"HEAD", "/c", []string{"Transfer-Encoding", "chunked"}, func(x *proxy.Exchange) { x.Facts.Present = protocol.HasTransferEncoding }, "BYPASS", ""},
		}, 3},
		{"repeated parameters keep their order", []step{
			{"GET", "/q?a=evil&a=good", nil, nil, "MISS", "1 a=evil&a=good  "},
			{"GET", "/q?a=good&a=evil", nil, nil, "MISS", "2 a=good&a=evil  "},
			{"GET", "/q?b=1&a=evil&a=good", nil, nil, "MISS", "3 b=1&a=evil&a=good  "},
			{"GET", "/q?a=evil&b=1&a=good", nil, nil, "HIT", "3 b=1&a=evil&a=good  "},
			{"GET", "/q?a=good&b=1&a=evil", nil, nil, "MISS", "4 a=good&b=1&a=evil  "},
		}, 4},
		{"forwarded fields from a trusted proxy are keyed", []step{
			{"GET", "/f", []string{"X-Forwarded-Host", "evil.example"}, trusted(protocol.HasXForwardedHost), "MISS", "1  evil.example "},
			{"GET", "/f", nil, trusted(0), "MISS", "2   "},
			{"GET", "/f", []string{"X-Forwarded-Host", "evil.example"}, trusted(protocol.HasXForwardedHost), "HIT", "1  evil.example "},
			{"GET", "/f", []string{"X-Forwarded-Proto", "https"}, trusted(protocol.HasXForwardedProto), "MISS", "3   "},
			{"GET", "/f", []string{"X-Forwarded-Prefix", "/shop"}, trusted(protocol.HasXForwardedPrefix), "MISS", "4   "},
			{"GET", "/f", []string{"Forwarded", "host=evil"}, trusted(protocol.HasForwarded), "MISS", "5   "},
			// From an untrusted peer the gateway replaces them (from Host), so they are not keyed.
			{"GET", "/f", []string{"X-Forwarded-Host", "evil.example"}, func(x *proxy.Exchange) { x.Facts.Present = protocol.HasXForwardedHost }, "HIT", "2   "},
		}, 5},
		{"more parameters than are sorted keep all of them", []step{
			{"GET", "/m?" + strings.Repeat("x=1&", 40) + "a=1", nil, nil, "MISS", ""},
			{"GET", "/m?" + strings.Repeat("x=1&", 40) + "a=2", nil, nil, "MISS", ""},
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config.Cache{}, echo())
			runSteps(t, h, tc.steps)
			if got := h.calls.Load(); got != tc.calls {
				t.Fatalf("upstream called %d times, want %d", got, tc.calls)
			}
		})
	}
}

// multi answers with the given header lines, each added as its own line.
func multi(lines ...string) func(ctx *fasthttp.RequestCtx) {
	var n atomic.Int64
	return func(ctx *fasthttp.RequestCtx) {
		for i := 0; i+1 < len(lines); i += 2 {
			ctx.Response.Header.Add(lines[i], lines[i+1])
		}
		ctx.Response.SetBodyString(fmt.Sprint(n.Add(1)))
	}
}

func TestCacheReadsEveryFieldLine(t *testing.T) {
	soon := time.Now().Add(time.Hour).UTC().Format(http1123)
	for _, tc := range []struct {
		name     string
		upstream func(*fasthttp.RequestCtx)
		req      []string
		stored   bool
	}{
		{"second Cache-Control line forbids storing", multi("Cache-Control", "max-age=3600", "Cache-Control", "no-store"), nil, false},
		{"second Cache-Control line makes it private", multi("Cache-Control", "max-age=3600", "Cache-Control", "private"), nil, false},
		{"second Cache-Control line shortens it", multi("Cache-Control", "max-age=3600", "Cache-Control", "s-maxage=0"), nil, false},
		{"second Vary line is a star", multi("Cache-Control", "max-age=3600", "Vary", "Accept", "Vary", "*"), nil, false},
		{"two Expires lines are invalid", multi("Expires", soon, "Expires", soon), nil, false},
		{"two Age lines: the first counts", multi("Cache-Control", "max-age=3600", "Age", "7200", "Age", "0"), nil, false},
		{"Age list: the first counts", multi("Cache-Control", "max-age=3600", "Age", "7200, 0"), nil, false},
		{"invalid Age is never fresh", multi("Cache-Control", "max-age=3600", "Age", "abc"), nil, false},
		{"negative Age is never fresh", multi("Cache-Control", "max-age=3600", "Age", "-10"), nil, false},
		{"valid Age within max-age", multi("Cache-Control", "max-age=3600", "Age", "10"), nil, true},
		{"one valid Expires", multi("Expires", soon), nil, true},
		{"Expires past 2262", multi("Expires", "Fri, 01 Jan 2300 00:00:00 GMT"), nil, true},
		{"Expires with a one-digit hour", multi("Expires", strings.Replace(soon, " 0", " ", 1)), nil, false},
		{"Expires with extra spaces", multi("Expires", strings.Replace(soon, " ", "  ", 1)), nil, false},
		{"invalid Expires is already expired", multi("Expires", "tomorrow"), nil, false},
		{"max-age wins over an invalid Expires", multi("Cache-Control", "max-age=60", "Expires", "0"), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config.Cache{}, tc.upstream)
			h.do("GET", "/p", tc.req...)
			r := h.do("GET", "/p", tc.req...)
			if stored := xcache(r) == "HIT"; stored != tc.stored {
				t.Fatalf("second request X-Cache %q, want stored=%v", xcache(r), tc.stored)
			}
		})
	}
	t.Run("second request Cache-Control line asks for revalidation", func(t *testing.T) {
		h := newHarness(t, config.Cache{}, multi("Cache-Control", "max-age=3600"))
		h.do("GET", "/p")
		if r := h.do("GET", "/p", "Cache-Control", "max-stale=10", "Cache-Control", "no-cache"); xcache(r) != "MISS" {
			t.Fatalf("X-Cache %q, want MISS", xcache(r))
		}
		if r := h.do("GET", "/p", "Pragma", "x", "Pragma", "no-cache"); xcache(r) != "MISS" {
			t.Fatalf("second Pragma line: X-Cache %q, want MISS", xcache(r))
		}
	})
	t.Run("a vary header sent on two lines is keyed by both", func(t *testing.T) {
		h := newHarness(t, config.Cache{Vary: []string{"Accept-Language"}}, multi())
		h.do("GET", "/p", "Accept-Language", "fr", "Accept-Language", "de")
		if r := h.do("GET", "/p", "Accept-Language", "fr"); xcache(r) != "MISS" {
			t.Fatalf("X-Cache %q, want MISS: fr is not fr, de", xcache(r))
		}
	})
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestParseHTTPDate(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC).UnixNano()
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC).Unix()
	for _, tc := range []struct {
		in   string
		ok   bool
		want int64
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", true, want},
		{"Sunday, 06-Nov-94 08:49:37 GMT", true, want},
		{"Sun Nov  6 08:49:37 1994", true, want},
		{"Friday, 01-Jan-75 00:00:00 GMT", true, time.Date(2075, 1, 1, 0, 0, 0, 0, time.UTC).Unix()},
		{"Monday, 01-Jan-77 00:00:00 GMT", true, time.Date(1977, 1, 1, 0, 0, 0, 0, time.UTC).Unix()},
		{"Fri, 01 Jan 2300 00:00:00 GMT", true, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC).Unix()},
		{"Sun, 06 Nov 1994 8:49:37 GMT", false, 0},
		{"Sun, 06 Nov 1994  08:49:37 GMT", false, 0},
		{"Sun,  06 Nov 1994 08:49:37 GMT", false, 0},
		{"Sun, 06 Nov 1994 08:49:37 UTC", false, 0},
		{"Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", false, 0},
		{"Sun, 31 Feb 1994 08:49:37 GMT", false, 0},
		{"Sun, 06 Nov 1994 24:00:00 GMT", false, 0},
		{"Xyz, 06 Nov 1994 08:49:37 GMT", false, 0},
		{"Sun Nov 6 08:49:37 1994", false, 0},
		{"Sunday, 06-Nov-1994 08:49:37 GMT", false, 0},
		{"0", false, 0},
		{"", false, 0},
	} {
		got, ok := parseHTTPDate([]byte(tc.in), now)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseHTTPDate(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseTargeted(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ok     bool
		maxAge int64
	}{
		{"max-age=60", true, 60},
		{"max-age=60, must-revalidate", true, 60},
		{"no-store", true, -1},
		{"", false, -1},
		{"max-age=abc", false, 0},
		{`max-age="60"`, false, 0},
		{"max-age=60,,private", false, 60},
		{"max-age=", false, 0},
	} {
		d, ok := parseTargeted([]byte(tc.in))
		if ok != tc.ok || (ok && d.maxAge != tc.maxAge) {
			t.Errorf("parseTargeted(%q) = max-age %d, %v; want %d, %v", tc.in, d.maxAge, ok, tc.maxAge, tc.ok)
		}
	}
}

func TestCacheTargetedCacheControl(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upstream func(*fasthttp.RequestCtx)
		stored   bool
	}{
		{"CDN-Cache-Control stores what Cache-Control forbids", multi("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"), true},
		{"CDN-Cache-Control forbids what Cache-Control allows", multi("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"), false},
		{"the gateway's own field wins over CDN-Cache-Control", multi("CDN-Cache-Control", "no-store", "Archway-Cache-Control", "max-age=60"), true},
		{"an invalid targeted field is ignored", multi("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=soon"), true},
		{"a targeted field replaces Expires", multi("Expires", "Fri, 01 Jan 2300 00:00:00 GMT", "CDN-Cache-Control", "max-age=0"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config.Cache{}, tc.upstream)
			first := h.do("GET", "/p")
			if len(first.Header.Peek("Archway-Cache-Control")) != 0 {
				t.Fatal("Archway-Cache-Control reached the client")
			}
			r := h.do("GET", "/p")
			if stored := xcache(r) == "HIT"; stored != tc.stored {
				t.Fatalf("second request X-Cache %q, want stored=%v", xcache(r), tc.stored)
			}
			if len(r.Header.Peek("Archway-Cache-Control")) != 0 {
				t.Fatal("Archway-Cache-Control replayed from the cache")
			}
		})
	}
}

func TestCacheHitKeepsStoredDate(t *testing.T) {
	date := time.Now().Add(-10 * time.Second).UTC().Format(http1123)
	h := newHarness(t, config.Cache{}, func(ctx *fasthttp.RequestCtx) {
		// As the upstream transport leaves it: parsed, Date line included (Set ignores Date).
		raw := "HTTP/1.1 200 OK\r\nDate: " + date + "\r\nCache-Control: max-age=3600\r\nContent-Length: 1\r\n\r\n"
		if err := ctx.Response.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Error(err)
		}
		ctx.Response.SetBodyString("1")
	})
	h.do("GET", "/p")
	r := h.do("GET", "/p")
	if xcache(r) != "HIT" {
		t.Fatalf("X-Cache %q", xcache(r))
	}
	got := onWire(t, r)
	if strings.Count(got, "Date: ") != 1 || !strings.Contains(got, "Date: "+date+"\r\n") || !strings.Contains(got, "Age: 0\r\n") {
		t.Fatalf("a hit must carry the stored Date %q and an Age; wrote:\n%s", date, got)
	}
	// The template comes from a request that asked to close; a hit must not inherit that, or
	// every cache hit closes the client's keep-alive connection.
	if r.ConnectionClose() || strings.Contains(got, "Connection: close") {
		t.Fatalf("a hit closes the client's connection; wrote:\n%s", got)
	}
}

// onWire is what fasthttp's server writes for r.
func onWire(t *testing.T, r *fasthttp.Response) string {
	t.Helper()
	var wire bytes.Buffer
	w := bufio.NewWriter(&wire)
	if err := r.Write(w); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	return wire.String()
}

func TestCacheRevalidatesWithValidators(t *testing.T) {
	var conds []string
	var n atomic.Int64
	h := newHarness(t, config.Cache{}, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		conds = append(conds, fmt.Sprintf("%s|%s", ctx.Request.Header.Peek("If-None-Match"), ctx.Request.Header.Peek("If-Modified-Since")))
		if string(ctx.Request.Header.Peek("If-None-Match")) == `"v1"` {
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			ctx.Response.Header.Set("Cache-Control", "max-age=3600")
			ctx.Response.Header.Set("X-Version", "fresh")
			return
		}
		ctx.Response.Header.Set("Cache-Control", "max-age=3600")
		ctx.Response.Header.Set("ETag", `"v1"`)
		ctx.Response.Header.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		ctx.Response.Header.Set("X-Version", "first")
		ctx.Response.SetBodyString("body")
	})
	runSteps(t, h, []step{
		{"GET", "/p", nil, nil, "MISS", "body"},
		// The client asks for revalidation: the stored response is validated, not fetched again.
		{"GET", "/p", []string{"Cache-Control", "no-cache"}, nil, "REVALIDATED", "body"},
		{"GET", "/p", nil, nil, "HIT", "body"},
	})
	if want := `|,"v1"|Mon, 02 Jan 2006 15:04:05 GMT`; strings.Join(conds, ",") != want {
		t.Fatalf("conditions sent upstream %q, want %q", strings.Join(conds, ","), want)
	}
	if r := h.do("GET", "/p"); string(r.Header.Peek("X-Version")) != "fresh" {
		t.Fatalf("the 304's fields did not replace the stored ones: X-Version %q", r.Header.Peek("X-Version"))
	}
	// A client's own condition is answered from the revalidated entry.
	if r := h.do("GET", "/p", "Cache-Control", "no-cache", "If-None-Match", `"v1"`); r.StatusCode() != 304 || xcache(r) != "REVALIDATED" {
		t.Fatalf("conditional revalidation answered %d %q, want 304 REVALIDATED", r.StatusCode(), xcache(r))
	}
}

func TestCacheStaleEntryIsRevalidated(t *testing.T) {
	var n atomic.Int64
	h := newHarness(t, config.Cache{StaleWhileRevalidate: config.Duration(time.Hour)}, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		if len(ctx.Request.Header.Peek("If-None-Match")) > 0 {
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			return
		}
		// must-revalidate: the route's stale_while_revalidate may not serve it stale.
		ctx.Response.Header.Set("Cache-Control", "max-age=1, must-revalidate")
		ctx.Response.Header.Set("ETag", `"v1"`)
		ctx.Response.SetBodyString("body")
	})
	h.do("GET", "/p")
	time.Sleep(1100 * time.Millisecond) // max-age=1 ends
	if r := h.do("GET", "/p"); xcache(r) != "REVALIDATED" || string(r.Body()) != "body" || r.StatusCode() != 200 {
		t.Fatalf("stale entry with must-revalidate: %d %q %q, want 200 REVALIDATED body", r.StatusCode(), xcache(r), r.Body())
	}
	if n.Load() != 2 {
		t.Fatalf("upstream called %d times, want 2", n.Load())
	}
}

func TestCacheInvalidatesAfterUnsafeMethods(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		target   string
		status   int
		location string
		cleared  bool
	}{
		{"POST to the URI", "POST", "/p?a=1", 201, "", true},
		{"DELETE to the URI", "DELETE", "/p?a=1", 204, "", true},
		{"PUT redirected", "PUT", "/p?a=1", 303, "", true},
		{"extension method", "PROPFIND", "/p?a=1", 207, "", true},
		{"POST elsewhere naming it in Location", "POST", "/orders", 201, "/p?a=1", true},
		{"Location relative to the request", "POST", "/x/y", 201, "../p?a=1", true},
		{"Location absolute on the same host", "POST", "/orders", 201, "http://SHOP.example/p?a=1", true},
		{"Location on another host", "POST", "/orders", 201, "http://other.example/p?a=1", false},
		{"failed POST", "POST", "/p?a=1", 500, "", false},
		{"refused POST", "POST", "/p?a=1", 403, "", false},
		{"another query", "POST", "/p?a=2", 201, "", false},
		{"OPTIONS is safe", "OPTIONS", "/p?a=1", 200, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gets atomic.Int64
			h := newHarness(t, config.Cache{Vary: []string{"Accept-Language"}}, func(ctx *fasthttp.RequestCtx) {
				if string(ctx.Method()) != "GET" {
					ctx.SetStatusCode(tc.status)
					if tc.location != "" {
						ctx.Response.Header.Set("Location", tc.location)
					}
					return
				}
				ctx.Response.Header.Set("Vary", "Accept")
				ctx.Response.SetBodyString(fmt.Sprint(gets.Add(1)))
			})
			h.do("GET", "/p?a=1", "Accept-Language", "fr", "Accept", "a")
			h.do("GET", "/p?a=1", "Accept-Language", "de", "Accept", "b")
			h.doX(tc.method, tc.target, func(x *proxy.Exchange) {
				if tc.method == "PROPFIND" {
					x.Method = -1 // not one of the methods the gateway indexes
				}
			})
			for _, lang := range []string{"fr", "de"} {
				accept := map[string]string{"fr": "a", "de": "b"}[lang]
				r := h.do("GET", "/p?a=1", "Accept-Language", lang, "Accept", accept)
				if cleared := xcache(r) == "MISS"; cleared != tc.cleared {
					t.Fatalf("GET %s after %s %s -> %d: X-Cache %q, want cleared=%v", lang, tc.method, tc.target, tc.status, xcache(r), tc.cleared)
				}
			}
		})
	}
}

var errRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func TestCacheStaleIfError(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     config.Cache
		cc      string
		failure func(x *proxy.Exchange)
		served  bool
	}{
		{"response stale-if-error, connection refused", config.Cache{}, "max-age=1, stale-if-error=3600", func(x *proxy.Exchange) { proxy.WriteError(x, errRefused) }, true},
		{"response stale-if-error, 503", config.Cache{}, "max-age=1, stale-if-error=3600", func(x *proxy.Exchange) { x.Ctx.SetStatusCode(503) }, true},
		{"route default", config.Cache{StaleIfError: config.Duration(time.Hour)}, "max-age=1", func(x *proxy.Exchange) { proxy.WriteError(x, errRefused) }, true},
		{"none", config.Cache{}, "max-age=1", func(x *proxy.Exchange) { proxy.WriteError(x, errRefused) }, false},
		{"must-revalidate forbids it", config.Cache{StaleIfError: config.Duration(time.Hour)}, "max-age=1, must-revalidate", func(x *proxy.Exchange) { proxy.WriteError(x, errRefused) }, false},
		{"404 is an answer, not a failure", config.Cache{StaleIfError: config.Duration(time.Hour)}, "max-age=1", func(x *proxy.Exchange) { x.Ctx.SetStatusCode(404) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			h := newExchangeHarness(t, tc.cfg, func(x *proxy.Exchange) {
				if failing.Load() {
					tc.failure(x)
					return
				}
				x.Ctx.Response.Header.Set("Cache-Control", tc.cc)
				x.Ctx.Response.SetBodyString("stored")
			})
			h.do("GET", "/p")
			failing.Store(true)
			time.Sleep(1100 * time.Millisecond) // max-age=1 ends
			r := h.do("GET", "/p")
			if served := xcache(r) == "STALE" && string(r.Body()) == "stored" && r.StatusCode() == 200; served != tc.served {
				t.Fatalf("upstream failing: %d %q %q, want stored response served=%v", r.StatusCode(), xcache(r), r.Body(), tc.served)
			}
		})
	}
}

func FuzzEntryUnmarshalBinary(f *testing.F) {
	for _, e := range []*Entry{
		{Key: "h\x00/p\x00a=1\x00p", Path: "/p", Status: 200, Header: []KV{{[]byte("Content-Type"), []byte("text/plain")}, {[]byte("Date"), []byte("Sun, 06 Nov 1994 08:49:37 GMT")}},
			Body: []byte("hello"), StoredAt: 1, FreshUntil: 3, StaleUntil: 4, ErrorUntil: 5, KeepUntil: 6, ETag: []byte(`"x"`), LastMod: 5},
		{Key: "h\x00/p\x00\x00p", Path: "/p", VaryNames: []string{"Accept", "Accept-Language"}, KeepUntil: 9},
	} {
		raw, _ := e.MarshalBinary()
		f.Add(raw)
	}
	f.Add([]byte{encodingVersion})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e Entry
		if err := e.UnmarshalBinary(raw); err != nil {
			return
		}
		again, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var e2 Entry
		if err := e2.UnmarshalBinary(again); err != nil {
			t.Fatalf("an entry that decoded does not decode after encoding again: %v", err)
		}
		if a, b := entryString(&e), entryString(&e2); a != b {
			t.Fatalf("decoding, encoding and decoding changed the entry:\n%s\n%s", a, b)
		}
		if e.VaryNames == nil && (e.Status < 100 || e.Status > 999) {
			t.Fatalf("status %d accepted", e.Status)
		}
		for _, kv := range e.Header {
			if !validFieldName(kv.Key) || !validFieldValue(kv.Value) {
				t.Fatalf("header %q: %q accepted", kv.Key, kv.Value)
			}
		}
		if e.Size() < entryOverhead {
			t.Fatalf("size %d", e.Size())
		}
		e.buildHeader() // what a hit replays must be built without panicking
		if e.header != nil && e.header.StatusCode() != e.Status {
			t.Fatalf("stored status %d replayed as %d", e.Status, e.header.StatusCode())
		}
	})
}

func entryString(e *Entry) string {
	return fmt.Sprintf("%q %q %d %q %q %d %d %d %d %d %d %q %d %q", e.Key, e.Path, e.Status, e.Header, e.Body, e.StoredAt, e.InitialAge,
		e.FreshUntil, e.StaleUntil, e.ErrorUntil, e.KeepUntil, e.ETag, e.LastMod, e.VaryNames)
}

// A hit behind a trusted proxy reads its forwarded fields and the upstream's Vary header on
// every line, and still allocates nothing.
func TestCacheHitBehindTrustedProxyAllocatesNothing(t *testing.T) {
	h := newHarness(t, config.Cache{Vary: []string{"Accept-Encoding"}}, body("x", "Vary", "Accept-Language", "Cache-Control", "max-age=60"))
	x, serve := hitExchange(t, h)
	x.PeerTrusted = true
	x.Facts.Present = protocol.HasXForwardedHost | protocol.HasXForwardedProto
	x.Ctx.Request.Header.Add("X-Forwarded-Host", "shop.example")
	x.Ctx.Request.Header.Add("X-Forwarded-Proto", "https")
	x.Ctx.Request.Header.Add("Accept-Language", "fr")
	x.Ctx.Request.Header.Add("Cache-Control", "max-stale=5")
	serve()
	serve()
	if xcache(&x.Ctx.Response) != "HIT" {
		t.Fatalf("X-Cache %q", xcache(&x.Ctx.Response))
	}
	if n := testing.AllocsPerRun(1000, serve); n != 0 {
		t.Fatalf("a cache hit behind a trusted proxy allocates %.1f times", n)
	}
}

// TestCacheHitAddsDateWhenUpstreamSentNone: a response stored without Date gets the time it was
// received (RFC 9110 §6.6.1), so every hit carries exactly one Date, the same on each hit.
func TestCacheHitAddsDateWhenUpstreamSentNone(t *testing.T) {
	h := newHarness(t, config.Cache{}, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=3600")
		ctx.Response.SetBodyString("1")
	})
	before := time.Now().Add(-time.Second)
	h.do("GET", "/p")
	dates := map[string]bool{}
	for range 2 {
		r := h.do("GET", "/p")
		if xcache(r) != "HIT" {
			t.Fatalf("X-Cache %q", xcache(r))
		}
		got := onWire(t, r)
		if strings.Count(got, "Date: ") != 1 {
			t.Fatalf("a hit of a response stored without Date must carry one Date; wrote:\n%s", got)
		}
		d := string(r.Header.Peek("Date"))
		when, err := http.ParseTime(d)
		if err != nil || when.Before(before.Truncate(time.Second)) || when.After(time.Now()) {
			t.Fatalf("Date %q (%v): want the time the response was stored", d, err)
		}
		dates[d] = true
	}
	if len(dates) != 1 {
		t.Fatalf("two hits of one stored response carried different Dates: %v", dates)
	}
}
